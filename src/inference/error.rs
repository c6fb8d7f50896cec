use std::path::PathBuf;

/// Everything that can go wrong below the HTTP layer when loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(
        "model `{name}` not found: looked in {local} and the hf-hub cache{detail}. \
         Fix: run `scripts/fetch-models.sh {name}` or `helpdesk models fetch {name}`"
    )]
    ModelMissing {
        name: String,
        local: PathBuf,
        detail: &'static str,
    },
    #[error("unknown model `{0}` (not in models/registry.toml)")]
    UnknownModel(String),
    #[error("model file {path} has sha256 {actual}, expected {expected}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("device `{0}` is not available: {1}")]
    Device(String, String),
    #[error("input {index} has {tokens} tokens, more than the model's limit of {max}; send truncate=true to cut it")]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model file {path}: {reason}")]
    InvalidFile { path: PathBuf, reason: String },
    #[error("forward pass failed: {0}")]
    Forward(String),
    #[error("the inference queue is full")]
    Overloaded,
    #[error("the model thread has stopped")]
    Stopped,
}

impl InferenceError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn invalid_file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::InvalidFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = InferenceError> = std::result::Result<T, E>;
