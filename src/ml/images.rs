//! Image heads: label sets trained on images' 1280-d embeddings
//! (EfficientNet-Lite0's penultimate features) through the same pipeline as
//! text heads — `helpdesk train --task asset_type --images DIR`, where DIR
//! holds one folder of images per label. The attachment checks then run a
//! tenant's image heads (`kind.heads` in its pipeline) on every image.
//!
//! An image enters the pipeline as an `Example` whose text names it
//! (`label/file sha256:…`): the embedding cache is keyed by that text, so a
//! changed file is embedded again, and the evidence of a prediction names
//! the training images it is closest to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::cache::Embedder;
use super::dataset::Example;
use crate::vision::{Vision, IMAGE_ENCODER};

/// File endings read as images.
const EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// The image encoder behind the pipeline's `Embedder`: each "text" is the
/// name of one of the images it was given.
pub struct ImageEmbedder<'a> {
    vision: &'a Vision,
    files: HashMap<String, PathBuf>,
}

/// `name@<first 12 hex of the weights' sha256>`, like the text encoder's.
pub fn image_encoder_id() -> String {
    let registry = crate::inference::Registry::builtin();
    let sha = registry
        .get(IMAGE_ENCODER)
        .ok()
        .and_then(|s| s.files.first().map(|f| f.sha256[..12].to_string()))
        .unwrap_or_else(|| "unpinned".into());
    format!("{IMAGE_ENCODER}@{sha}")
}

impl<'a> ImageEmbedder<'a> {
    /// The labelled images of `dir` (`dir/<label>/<image>`, sorted) and an
    /// embedder that knows where each one is.
    pub fn from_dir(vision: &'a Vision, dir: &Path) -> anyhow::Result<(Vec<Example>, Self)> {
        let mut examples = Vec::new();
        let mut files = HashMap::new();
        let mut labels: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        labels.sort();
        for folder in labels {
            let label = folder
                .file_name()
                .and_then(|n| n.to_str())
                .context("a label folder's name is not UTF-8")?
                .to_string();
            let mut images: Vec<PathBuf> = std::fs::read_dir(&folder)
                .with_context(|| format!("read {}", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
                })
                .collect();
            images.sort();
            for path in images {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
                let sha = hex::encode(Sha256::digest(&bytes));
                let text = format!("{label}/{name} sha256:{}", &sha[..16]);
                files.insert(text.clone(), path);
                examples.push(Example {
                    text,
                    label: label.clone(),
                });
            }
        }
        if examples.is_empty() {
            anyhow::bail!(
                "no images under {} (expected one folder per label holding {} files)",
                dir.display(),
                EXTENSIONS.join("/")
            );
        }
        Ok((examples, Self { vision, files }))
    }
}

impl Embedder for ImageEmbedder<'_> {
    fn id(&self) -> String {
        image_encoder_id()
    }

    fn dims(&self) -> usize {
        crate::vision::effnet::FEATURES
    }

    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                let path = self
                    .files
                    .get(*t)
                    .with_context(|| format!("{t:?} is not one of the images given"))?;
                let bytes =
                    std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
                self.vision
                    .embed(&bytes)
                    .with_context(|| format!("embed {}", path.display()))
            })
            .collect()
    }
}
