//! The ML pipeline around the encoder: datasets, the embedding cache,
//! training and evaluation of label heads, and their versioned store.
//! Knows nothing of HTTP; the CLI and the AI service both drive it.

pub mod cache;
pub mod dataset;
pub mod eval;
pub mod images;
pub mod model;
pub mod pipeline;
pub mod store;
pub mod tune;

pub use cache::{Embedder, EmbeddingCache};
pub use model::{Classifier, HeadKind, ModelCard};
pub use store::ModelStore;

use std::path::{Path, PathBuf};

/// Where the embedding cache lives under the data directory.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache").join("embeddings")
}
