//! Model files, devices, the text encoder and the thread that serves it.
//! Knows nothing of HTTP or tickets.

pub mod batcher;
pub mod bert;
pub mod calibration;
pub mod device;
pub mod encoder;
pub mod error;
pub mod files;
pub mod heads;
pub mod kernels;
pub mod lexical;
pub mod propagation;
pub mod registry;
pub mod training;

pub use batcher::{BatchLimits, EncoderHandle};
pub use device::{select_device, DeviceKind};
pub use encoder::TextEncoder;
pub use error::InferenceError;
pub use registry::Registry;

use std::path::Path;

/// Resolves, loads and returns a text encoder in one call (CLI, tests, benches).
pub fn load_text_encoder(
    name: &str,
    models_dir: &Path,
    device: DeviceKind,
    allow_download: bool,
) -> Result<TextEncoder, InferenceError> {
    let registry = Registry::builtin();
    let spec = registry.get(name)?;
    let paths = files::resolve(name, spec, models_dir, allow_download)?;
    tracing::info!(model = name, source = ?paths.source, weights = %paths.weights.display(), "loading model");
    let device = select_device(device)?;
    TextEncoder::load(name, spec, &paths, &device)
}
