//! Knowledge-base text: articles (Markdown, HTML or plain text) cleaned into
//! heading-aware sections and cut into overlapping chunks for indexing.
//! Knows nothing of HTTP or of the vector index.

pub mod chunk;
pub mod text;

pub use chunk::{chunk, Chunk, ChunkConfig};
pub use text::{sections, Format, Section};
