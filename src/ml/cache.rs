//! Embeddings on disk, keyed by encoder id + sha256 of the text, so training
//! again on the same data does not encode it again.
//!
//! One append-only file per encoder under `<data_dir>/cache/embeddings/`:
//! records of `sha256(text)` (32 bytes) and the vector (little-endian f32).
//! A record cut short by a crash is ignored on load.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Something that turns texts into unit vectors: the encoder in-process
/// (CLI) or behind the service's batcher.
pub trait Embedder {
    /// Identifies the encoder and its weights; vectors of different ids never mix.
    fn id(&self) -> String;
    fn dims(&self) -> usize;
    /// L2-normalised embeddings, inputs over the length limit truncated.
    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>>;

    /// The same model's other vectors when `id` names them (base vectors of
    /// layer features and the reverse), so the promotion gate can score an
    /// active version that reads the other kind on the same examples.
    fn sibling(&self, id: &str) -> Option<Box<dyn Embedder + '_>> {
        let _ = id;
        None
    }
}

impl<T: Embedder + ?Sized> Embedder for &T {
    fn id(&self) -> String {
        (**self).id()
    }

    fn dims(&self) -> usize {
        (**self).dims()
    }

    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        (**self).embed(texts)
    }

    fn sibling(&self, id: &str) -> Option<Box<dyn Embedder + '_>> {
        (**self).sibling(id)
    }
}

impl Embedder for crate::inference::TextEncoder {
    fn id(&self) -> String {
        encoder_id(self.name())
    }

    fn dims(&self) -> usize {
        crate::inference::TextEncoder::dims(self)
    }

    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(crate::inference::TextEncoder::embed(
            self, texts, true, true,
        )?)
    }

    fn sibling(&self, id: &str) -> Option<Box<dyn Embedder + '_>> {
        let layers = LayerFeatures(self);
        (layers.id() == id).then(|| Box::new(layers) as Box<dyn Embedder>)
    }
}

/// Suffix of the id of an encoder's layer features: vectors of a head
/// trained on them are `inference::encoder::layer_features`, not the base
/// vector.
pub const LAYERS_SUFFIX: &str = "+layers";

/// The text encoder's layer features (every layer's mean token state, from
/// the one pass): a head option that reads more than the top layer.
pub struct LayerFeatures<'a>(pub &'a crate::inference::TextEncoder);

impl Embedder for LayerFeatures<'_> {
    fn id(&self) -> String {
        encoder_id(self.0.name()) + LAYERS_SUFFIX
    }

    fn dims(&self) -> usize {
        self.0.dims() * self.0.model().num_layers()
    }

    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let dims = self.0.dims();
        Ok(self
            .0
            .embed_layers(texts)?
            .iter()
            .map(|m| crate::inference::encoder::layer_features(m, dims))
            .collect())
    }

    fn sibling(&self, id: &str) -> Option<Box<dyn Embedder + '_>> {
        (self.0.id() == id).then(|| Box::new(self.0) as Box<dyn Embedder>)
    }
}

/// `name@<first 12 hex of the weights' sha256>` from the built-in registry.
pub fn encoder_id(name: &str) -> String {
    let registry = crate::inference::Registry::builtin();
    let sha = registry
        .get(name)
        .ok()
        .and_then(|s| {
            s.files
                .iter()
                .find(|f| f.path.ends_with(".safetensors"))
                .map(|f| f.sha256[..12.min(f.sha256.len())].to_string())
        })
        .unwrap_or_else(|| "unpinned".into());
    format!("{name}@{sha}")
}

fn key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub struct EmbeddingCache {
    path: Option<PathBuf>,
    dims: usize,
    map: HashMap<[u8; 32], Vec<f32>>,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache of `encoder_id` under `dir`.
    pub fn open(dir: &Path, encoder_id: &str, dims: usize) -> std::io::Result<Self> {
        let safe: String = encoder_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{safe}.f32"));
        let mut map = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let rec = 32 + dims * 4;
            if bytes.len() % rec != 0 {
                // Cut the torn tail so later appends stay aligned.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len((bytes.len() - bytes.len() % rec) as u64)?;
            }
            for r in bytes.chunks_exact(rec) {
                let mut k = [0u8; 32];
                k.copy_from_slice(&r[..32]);
                let v = r[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(k, v);
            }
        }
        Ok(Self {
            path: Some(path),
            dims,
            map,
        })
    }

    /// A cache that keeps nothing on disk.
    pub fn in_memory(dims: usize) -> Self {
        Self {
            path: None,
            dims,
            map: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Embeds `texts`, encoding only those not cached, `batch` at a time;
    /// `progress(done, total)` after each batch. New vectors are appended to
    /// the file as they come, so an interrupted run keeps what it did.
    pub fn embed_all(
        &mut self,
        embedder: &dyn Embedder,
        texts: &[&str],
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        anyhow::ensure!(
            embedder.dims() == self.dims,
            "the cache holds {}-d vectors, the encoder makes {}",
            self.dims,
            embedder.dims()
        );
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.map.contains_key(&key(t)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        // Similar lengths together: less work per batch for the encoder.
        missing.sort_by_key(|t| t.len());
        let mut file = match (&self.path, missing.is_empty()) {
            (Some(p), false) => {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)?;
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                )
            }
            _ => None,
        };
        let total = missing.len();
        progress(0, total);
        let mut done = 0;
        for chunk in missing.chunks(batch.max(1)) {
            let vecs = embedder.embed(chunk)?;
            anyhow::ensure!(vecs.len() == chunk.len(), "the encoder lost inputs");
            let mut buf = Vec::with_capacity(chunk.len() * (32 + self.dims * 4));
            for (t, v) in chunk.iter().zip(vecs) {
                anyhow::ensure!(v.len() == self.dims, "the encoder changed dimensions");
                let k = key(t);
                buf.extend_from_slice(&k);
                v.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
                self.map.insert(k, v);
            }
            if let Some(f) = file.as_mut() {
                f.write_all(&buf)?;
            }
            done += chunk.len();
            progress(done, total);
        }
        Ok(texts.iter().map(|t| self.map[&key(t)].clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A fake encoder (character counts) that counts its calls: the cache is
    /// what is under test.
    struct FakeEmbedder {
        calls: Cell<usize>,
        texts: Cell<usize>,
    }

    impl Embedder for FakeEmbedder {
        fn id(&self) -> String {
            "fake@0".into()
        }
        fn dims(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
            self.calls.set(self.calls.get() + 1);
            self.texts.set(self.texts.get() + texts.len());
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, t.matches('a').count() as f32])
                .collect())
        }
    }

    #[test]
    fn a_second_run_encodes_nothing_and_a_torn_record_is_ignored() {
        let dir = std::env::temp_dir().join(format!("helpdesk-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fake = FakeEmbedder {
            calls: Cell::new(0),
            texts: Cell::new(0),
        };
        let texts = ["a", "banana", "a", "kiwi"];
        let mut c = EmbeddingCache::open(&dir, &fake.id(), 2).unwrap();
        let v = c.embed_all(&fake, &texts, 2, |_, _| {}).unwrap();
        assert_eq!(v[1], vec![6.0, 3.0]);
        assert_eq!(v[0], v[2]);
        assert_eq!(fake.texts.get(), 3, "duplicates are encoded once");

        let mut again = EmbeddingCache::open(&dir, &fake.id(), 2).unwrap();
        assert_eq!(again.len(), 3);
        let w = again.embed_all(&fake, &texts, 2, |_, _| {}).unwrap();
        assert_eq!(w, v);
        assert_eq!(fake.texts.get(), 3, "nothing re-encoded");

        // A crash mid-write leaves a partial record: it is dropped, not misread.
        let file = dir.join("fake_0.f32");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&file, bytes).unwrap();
        let mut torn = EmbeddingCache::open(&dir, &fake.id(), 2).unwrap();
        assert_eq!(torn.len(), 3);
        // The torn tail was cut, so what comes next is read back right.
        torn.embed_all(&fake, &["papaya"], 8, |_, _| {}).unwrap();
        let reopened = EmbeddingCache::open(&dir, &fake.id(), 2).unwrap();
        assert_eq!(reopened.len(), 4);
        assert_eq!(reopened.map[&key("papaya")], vec![6.0, 3.0]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
