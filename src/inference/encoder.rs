//! The text encoder: tokenizer + packed BERT + pooling, synchronous. It is
//! driven by the batcher's thread; nothing here knows about HTTP.

use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use super::bert::{Packed, PackedBert, Precision};
use super::error::{InferenceError, Result};
use super::files::ModelPaths;
use super::registry::{ModelSpec, Pooling};

/// One vector (or flattened matrix) per input text.
pub type Rows = Vec<Vec<f32>>;

pub struct TextEncoder {
    name: String,
    tokenizer: Arc<TextTokenizer>,
    model: PackedBert,
    pooling: Pooling,
}

/// The tokenizer half of the encoder, shared with request handlers so text is
/// tokenized on their side and only ids cross to the model thread.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    max_len: usize,
    cls_id: u32,
    sep_id: u32,
}

/// One tokenized input: its ids (with [CLS]/[SEP]) and how long it was before truncation.
#[derive(Debug, Clone)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub untruncated_len: usize,
}

impl TextEncoder {
    #[tracing::instrument(skip_all, fields(model = name))]
    pub fn load(name: &str, spec: &ModelSpec, paths: &ModelPaths, device: &Device) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(&paths.tokenizer)
            .map_err(|e| InferenceError::invalid_file(&paths.tokenizer, e))?;
        // The shipped tokenizer.json pads every input to 128 and truncates at
        // 128; the model's own limit is max_seq_length (256). Padding is ours
        // to do (we pack instead), and truncation is done by `tokenize`.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| InferenceError::Tokenizer(e.to_string()))?;
        let token = |t: &str| {
            tokenizer.token_to_id(t).ok_or_else(|| {
                InferenceError::invalid_file(&paths.tokenizer, format!("no {t} token"))
            })
        };
        let (cls_id, sep_id) = (token("[CLS]")?, token("[SEP]")?);

        let config_text = std::fs::read_to_string(&paths.config)
            .map_err(|e| InferenceError::io(format!("read {}", paths.config.display()), e))?;
        let config: candle_transformers::models::bert::Config = serde_json::from_str(&config_text)
            .map_err(|e| InferenceError::invalid_file(&paths.config, e))?;
        // Safety: the weights file is only read; it must not be changed while mapped.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&paths.weights], DType::F32, device)? };
        let model = PackedBert::load(vb, &config)?;
        let max_len = spec.max_seq_length.min(config.max_position_embeddings);
        Ok(Self {
            name: name.to_string(),
            tokenizer: Arc::new(TextTokenizer {
                tokenizer,
                max_len,
                cls_id,
                sep_id,
            }),
            model,
            pooling: spec.pooling,
        })
    }

    /// Switches the dense layers to `precision` (int8 quantizes them now).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.model = self.model.with_precision(precision)?;
        Ok(self)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_input_tokens(&self) -> usize {
        self.tokenizer.max_len
    }

    pub fn dims(&self) -> usize {
        self.model.hidden_size()
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    pub fn tokenizer(&self) -> &Arc<TextTokenizer> {
        &self.tokenizer
    }
    /// Embeds already-tokenized sequences in one forward pass.
    pub fn embed_tokens(&self, seqs: &[&[u32]], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut packed = Packed::default();
        for s in seqs {
            packed.push(s);
        }
        let pooled = match self.pooling {
            Pooling::Mean => self.model.forward_mean(&packed)?,
            Pooling::Cls => {
                let hidden = self.model.forward(&packed)?;
                let starts: Vec<u32> = packed
                    .lens
                    .iter()
                    .scan(0u32, |off, &n| {
                        let s = *off;
                        *off += n as u32;
                        Some(s)
                    })
                    .collect();
                let idx = candle_core::Tensor::from_vec(starts, seqs.len(), hidden.device())?;
                hidden.index_select(&idx, 0)?
            }
        };
        let mut rows = pooled.to_vec2::<f32>()?;
        if normalize {
            rows.iter_mut().for_each(|v| l2_normalize(v));
        }
        Ok(rows)
    }

    /// The model itself (tuning reads its layers).
    pub fn model(&self) -> &PackedBert {
        &self.model
    }

    fn pack(&self, texts: &[&str]) -> Result<Packed> {
        let toks = self.tokenizer.tokenize(texts, true)?;
        let mut packed = Packed::default();
        toks.iter().for_each(|t| packed.push(&t.ids));
        Ok(packed)
    }

    /// Unit base vectors of `texts` (truncated) and, per text, the hidden
    /// states entering the top `k` layers (`[len, hidden]`, row-major).
    pub fn embed_with_mid(&self, texts: &[&str], k: usize) -> Result<(Rows, Rows)> {
        if texts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let packed = self.pack(texts)?;
        let (mid, last) = self.model.forward_split(&packed, k)?;
        let mut base = self.model.mean_pool(&last, &packed)?.to_vec2::<f32>()?;
        base.iter_mut().for_each(|v| l2_normalize(v));
        let flat = mid.flatten_all()?.to_vec1::<f32>()?;
        let h = self.dims();
        let mut mids = Vec::with_capacity(texts.len());
        let mut offset = 0;
        for &n in &packed.lens {
            mids.push(flat[offset * h..(offset + n) * h].to_vec());
            offset += n;
        }
        Ok((base, mids))
    }

    /// Per sequence, every layer's mean token state (`layers × hidden`,
    /// layer 1 first, not normalised) from one pass; the last block is the
    /// base vector before normalisation.
    pub fn embed_tokens_layers(&self, seqs: &[&[u32]]) -> Result<Rows> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut packed = Packed::default();
        seqs.iter().for_each(|s| packed.push(s));
        Ok(self.model.forward_layer_means(&packed)?.to_vec2::<f32>()?)
    }

    /// `embed_tokens_layers` of texts (truncated).
    pub fn embed_layers(&self, texts: &[&str]) -> Result<Rows> {
        let toks = self.tokenizer.tokenize(texts, true)?;
        let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
        self.embed_tokens_layers(&seqs)
    }

    /// One pass for both: the unit base vectors and the unit vectors of the
    /// branch through `top` (tuned copies of the last `top.len()` layers).
    pub fn embed_branched(
        &self,
        texts: &[&str],
        top: &super::bert::TopLayers,
    ) -> Result<(Rows, Rows)> {
        if texts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let packed = self.pack(texts)?;
        let (mid, last) = self.model.forward_split(&packed, top.len())?;
        let tuned = self.model.forward_top(top, &mid, &packed)?;
        let pool = |h: &candle_core::Tensor| -> Result<Vec<Vec<f32>>> {
            let mut rows = self.model.mean_pool(h, &packed)?.to_vec2::<f32>()?;
            rows.iter_mut().for_each(|v| l2_normalize(v));
            Ok(rows)
        };
        Ok((pool(&last)?, pool(&tuned)?))
    }

    /// Tokenize and embed: the convenience path for the CLI and tests.
    pub fn embed(&self, texts: &[&str], normalize: bool, truncate: bool) -> Result<Vec<Vec<f32>>> {
        let toks = self.tokenizer.tokenize(texts, truncate)?;
        let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
        self.embed_tokens(&seqs, normalize)
    }
}

impl TextTokenizer {
    pub fn max_input_tokens(&self) -> usize {
        self.max_len
    }

    /// Tokenizes with [CLS]/[SEP]; longer than the model's limit is cut
    /// (keeping [SEP] last) when `truncate`, an error otherwise.
    pub fn tokenize(&self, texts: &[&str], truncate: bool) -> Result<Vec<Tokenized>> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let enc = self
                    .tokenizer
                    .encode_fast(*text, true)
                    .map_err(|e| InferenceError::Tokenizer(e.to_string()))?;
                let mut ids = enc.get_ids().to_vec();
                if ids.len() < 2 || ids[0] != self.cls_id {
                    return Err(InferenceError::Tokenizer(
                        "tokenizer did not add [CLS]/[SEP]".into(),
                    ));
                }
                let untruncated_len = ids.len();
                if ids.len() > self.max_len {
                    if !truncate {
                        return Err(InferenceError::TooLong {
                            index,
                            tokens: ids.len(),
                            max: self.max_len,
                        });
                    }
                    ids.truncate(self.max_len - 1);
                    ids.push(self.sep_id);
                }
                Ok(Tokenized {
                    ids,
                    untruncated_len,
                })
            })
            .collect()
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
/// Layer features from an `embed_tokens_layers` row of `dims`-wide blocks:
/// each layer's mean token state scaled to unit length, then the whole
/// scaled by `1/sqrt(layers)` so it is unit length too. A linear head on
/// them sees every depth of the one pass: sentiment lives lower in the stack
/// than the top layer, which similarity training shaped (SST-2 dev, logistic
/// regression: 81.4 % on the base vector, 83.5 % on these).
pub fn layer_features(means: &[f32], dims: usize) -> Vec<f32> {
    let blocks = means.len() / dims.max(1);
    let scale = 1.0 / (blocks.max(1) as f32).sqrt();
    let mut out = means.to_vec();
    for b in out.chunks_mut(dims.max(1)) {
        l2_normalize(b);
        b.iter_mut().for_each(|x| *x *= scale);
    }
    out
}

/// The unit base vector inside layer features of `dims`-wide rows: the last
/// layer's block, rescaled.
pub fn base_of_layers(features: &[f32], dims: usize) -> Vec<f32> {
    let start = features.len().saturating_sub(dims);
    let mut v = features[start..].to_vec();
    l2_normalize(&mut v);
    v
}

pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}
