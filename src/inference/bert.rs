//! BERT encoder on packed sequences.
//!
//! A batch's tokens are laid end to end as one `[tokens, hidden]` matrix, so
//! every dense layer (95 % of the FLOPs at ticket lengths) multiplies only real
//! tokens: no padding. Only attention, which mixes tokens within a sequence,
//! gathers them into a padded `[batch, heads, len, len]` block and back.
//! candle-transformers' `BertModel` pads everything instead; it is kept as the
//! reference this encoder is tested and benchmarked against.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

use super::error::{InferenceError, Result};
use super::kernels::{self, Activation};

/// A dense layer as stored: weight `[out, in]`, bias `[out]`; optionally
/// also quantized to int8 (`Q8_0`: blocks of 32 weights with one scale).
struct Dense {
    w: Tensor,
    b: Tensor,
    q8: Option<QMatMul>,
}

impl Dense {
    fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let Some(q) = &self.q8 else {
            return kernels::dense(x, &self.w, &self.b, act);
        };
        let y = q.forward(x)?.broadcast_add(&self.b)?;
        match act {
            Activation::None => Ok(y),
            Activation::Gelu => kernels::gelu(&y),
        }
    }

    fn quantize(&mut self) -> candle_core::Result<()> {
        let q = QTensor::quantize(&self.w, GgmlDType::Q8_0)?;
        self.q8 = Some(QMatMul::from_qtensor(q)?);
        Ok(())
    }
}

/// Weight precision of the dense layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// The checkpoint's f32 weights (default; the reference-exact path).
    #[default]
    F32,
    /// int8 weights (candle's Q8_0 quantized matmul, which also quantizes
    /// the activations); embeddings, LayerNorm and attention stay f32. An
    /// experiment: slower than f32 on AVX2 and below 0.999 cosine to the
    /// reference (BENCHMARKS.md), so the service does not offer it.
    Int8,
}

struct Layer {
    /// Query, key and value as one `[3H, H]` projection (query pre-scaled by
    /// 1/sqrt(head_dim)): one matmul instead of three.
    qkv: Dense,
    attn_out: Dense,
    ln1: Tensor,
    inter: Dense,
    out: Dense,
    ln2: Tensor,
}

pub struct PackedBert {
    word: Tensor,
    position: Tensor,
    token_type0: Tensor,
    emb_ln: Tensor,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    eps: f32,
    device: Device,
    /// Fused unpadded attention (CPU) or candle's padded batched matmul.
    padded_attention: bool,
}

/// Tuned copies of the encoder's top layers: a task's branch. The base
/// encoder runs once; the branch re-runs only these layers from the hidden
/// states entering them.
pub struct TopLayers {
    layers: Vec<Layer>,
}

impl TopLayers {
    /// From per-layer weights named as `PackedBert::layer_weights` names them.
    pub fn from_weights(layers: &[Vec<(String, Tensor)>], heads: usize) -> Result<Self> {
        let layers = layers
            .iter()
            .map(|named| {
                let get = |n: &str| {
                    named
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, t)| t.clone())
                        .ok_or_else(|| {
                            InferenceError::invalid_file("tuned layers", format!("no {n}"))
                        })
                };
                let qw = get("query.weight")?;
                let h = qw.dim(0)?;
                let scale = 1.0 / ((h / heads.max(1)) as f64).sqrt();
                let d = |w: Tensor, b: Tensor| Dense { w, b, q8: None };
                let ln = |n: &str| -> Result<Tensor> {
                    Ok(Tensor::stack(
                        &[&get(&format!("{n}.weight"))?, &get(&format!("{n}.bias"))?],
                        0,
                    )?)
                };
                Ok(Layer {
                    qkv: d(
                        Tensor::cat(
                            &[&(qw * scale)?, &get("key.weight")?, &get("value.weight")?],
                            0,
                        )?,
                        Tensor::cat(
                            &[
                                &(get("query.bias")? * scale)?,
                                &get("key.bias")?,
                                &get("value.bias")?,
                            ],
                            0,
                        )?,
                    ),
                    attn_out: d(get("attn_out.weight")?, get("attn_out.bias")?),
                    ln1: ln("ln1")?,
                    inter: d(get("inter.weight")?, get("inter.bias")?),
                    out: d(get("out.weight")?, get("out.bias")?),
                    ln2: ln("ln2")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Token ids of several sequences laid end to end.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub ids: Vec<u32>,
    pub lens: Vec<usize>,
}

impl Packed {
    pub fn push(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.lens.push(ids.len());
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    pub fn max_len(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }
}

fn ln_params(vb: &VarBuilder, hidden: usize) -> candle_core::Result<Tensor> {
    let w = vb.get(hidden, "weight")?;
    let b = vb.get(hidden, "bias")?;
    Tensor::stack(&[&w, &b], 0)
}

fn dense(vb: VarBuilder, din: usize, dout: usize) -> candle_core::Result<Dense> {
    Ok(Dense {
        w: vb.get((dout, din), "weight")?,
        b: vb.get(dout, "bias")?,
        q8: None,
    })
}

impl PackedBert {
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if !matches!(cfg.hidden_act, HiddenAct::Gelu) {
            return Err(InferenceError::invalid_file(
                "config.json",
                "only hidden_act = gelu (erf) BERT models are supported",
            ));
        }
        let h = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let emb = vb.pp("embeddings");
        let word = emb.get((cfg.vocab_size, h), "word_embeddings.weight")?;
        let position = emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type0 = emb
            .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
            .i(0)?;
        let emb_ln = ln_params(&emb.pp("LayerNorm"), h)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let att = vb.pp("attention.self");
                let q = dense(att.pp("query"), h, h)?;
                let k = dense(att.pp("key"), h, h)?;
                let v = dense(att.pp("value"), h, h)?;
                let qkv = Dense {
                    w: Tensor::cat(&[&(q.w * scale)?, &k.w, &v.w], 0)?,
                    b: Tensor::cat(&[&(q.b * scale)?, &k.b, &v.b], 0)?,
                    q8: None,
                };
                Ok(Layer {
                    qkv,
                    attn_out: dense(vb.pp("attention.output.dense"), h, h)?,
                    ln1: ln_params(&vb.pp("attention.output.LayerNorm"), h)?,
                    inter: dense(vb.pp("intermediate.dense"), h, cfg.intermediate_size)?,
                    out: dense(vb.pp("output.dense"), cfg.intermediate_size, h)?,
                    ln2: ln_params(&vb.pp("output.LayerNorm"), h)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            word,
            position,
            token_type0,
            emb_ln,
            layers,
            heads,
            head_dim,
            hidden: h,
            eps: cfg.layer_norm_eps as f32,
            padded_attention: !vb.device().is_cpu(),
            device: vb.device().clone(),
        })
    }

    /// Quantizes every dense layer's weights to int8 (`Precision::Int8`).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if precision == Precision::Int8 {
            for l in &mut self.layers {
                for d in [&mut l.qkv, &mut l.attn_out, &mut l.inter, &mut l.out] {
                    d.quantize()?;
                }
            }
        }
        Ok(self)
    }

    /// Uses the padded attention path (the GPU one) on any device: lets a
    /// CPU test check that path against the fused kernel.
    pub fn with_padded_attention(mut self, padded: bool) -> Self {
        self.padded_attention = padded;
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs the encoder and mean-pools each sequence: `[sequences, hidden]`.
    pub fn forward_mean(&self, batch: &Packed) -> Result<Tensor> {
        let hidden = self.forward(batch)?;
        let pool = mean_pool_matrix(&batch.lens, &self.device)?;
        Ok(pool.matmul(&hidden)?)
    }

    /// Last hidden state of every token: `[tokens, hidden]`.
    pub fn forward(&self, batch: &Packed) -> Result<Tensor> {
        let (b, l) = (batch.lens.len(), batch.max_len());
        let mut x = self.embeddings(batch)?;
        // CPU: attention runs unpadded in one fused kernel. Other devices:
        // gather into a padded block for candle's batched matmul.
        let gather = self.gather(batch)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, batch, gather.as_ref(), b, l)?;
        }
        Ok(x)
    }

    fn gather(&self, batch: &Packed) -> Result<Option<Gather>> {
        Ok(if self.padded_attention {
            Some(Gather::new(&batch.lens, &self.device)?)
        } else {
            None
        })
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        batch: &Packed,
        gather: Option<&Gather>,
        b: usize,
        l: usize,
    ) -> Result<Tensor> {
        let qkv = layer.qkv.forward(x, Activation::None)?;
        let ctx = match gather {
            None => qkv.apply_op1_no_bwd(&kernels::PackedAttention {
                lens: batch.lens.clone(),
                heads: self.heads,
                head_dim: self.head_dim,
            })?,
            Some(g) => self.attention(&qkv, g, b, l)?,
        };
        let attn = layer.attn_out.forward(&ctx, Activation::None)?;
        let x = kernels::add_layer_norm(&attn, x, &layer.ln1, self.eps)?;
        let inter = layer.inter.forward(&x, Activation::Gelu)?;
        let out = layer.out.forward(&inter, Activation::None)?;
        Ok(kernels::add_layer_norm(&out, &x, &layer.ln2, self.eps)?)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn heads(&self) -> usize {
        self.heads
    }

    pub fn layer_norm_eps(&self) -> f32 {
        self.eps
    }

    /// Mean of each sequence's rows of a packed `[tokens, hidden]` matrix.
    pub fn mean_pool(&self, hidden: &Tensor, batch: &Packed) -> Result<Tensor> {
        Ok(mean_pool_matrix(&batch.lens, &self.device)?.matmul(hidden)?)
    }

    /// One pass that also returns what a tuned branch needs: the hidden
    /// states entering the top `k` layers, and the base model's last hidden
    /// states (`[tokens, hidden]` each).
    pub fn forward_split(&self, batch: &Packed, k: usize) -> Result<(Tensor, Tensor)> {
        let n = self.layers.len();
        let k = k.min(n);
        let (b, l) = (batch.lens.len(), batch.max_len());
        let gather = self.gather(batch)?;
        let mut x = self.embeddings(batch)?;
        let mut mid = None;
        for (i, layer) in self.layers.iter().enumerate() {
            if i == n - k {
                mid = Some(x.clone());
            }
            x = self.layer_forward(layer, &x, batch, gather.as_ref(), b, l)?;
        }
        Ok((mid.unwrap_or_else(|| x.clone()), x))
    }

    /// Every layer's mean token state per sequence, from one pass:
    /// `[sequences, layers × hidden]`, layer 1 first (not normalised). The
    /// states are pooled together in one matmul, so this costs the base
    /// pass plus one wider pooling.
    pub fn forward_layer_means(&self, batch: &Packed) -> Result<Tensor> {
        let (b, l) = (batch.lens.len(), batch.max_len());
        let gather = self.gather(batch)?;
        let mut x = self.embeddings(batch)?;
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, batch, gather.as_ref(), b, l)?;
            states.push(x.clone());
        }
        let all = Tensor::cat(&states, 1)?;
        Ok(mean_pool_matrix(&batch.lens, &self.device)?.matmul(&all)?)
    }

    /// Runs tuned top layers on the hidden states `forward_split` returned.
    pub fn forward_top(&self, top: &TopLayers, mid: &Tensor, batch: &Packed) -> Result<Tensor> {
        let (b, l) = (batch.lens.len(), batch.max_len());
        let gather = self.gather(batch)?;
        let mut x = mid.clone();
        for layer in &top.layers {
            x = self.layer_forward(layer, &x, batch, gather.as_ref(), b, l)?;
        }
        Ok(x)
    }

    /// Layer `i`'s weights as stored in the checkpoint (query unscaled), by
    /// the names `TopLayers::from_weights` reads: the start of a tuned copy.
    pub fn layer_weights(&self, i: usize) -> Result<Vec<(String, Tensor)>> {
        let layer = self
            .layers
            .get(i)
            .ok_or_else(|| InferenceError::invalid_file("model", format!("no layer {i}")))?;
        let h = self.hidden;
        let scale = (self.head_dim as f64).sqrt();
        let ln = |t: &Tensor, j: usize| t.i(j);
        Ok(vec![
            ("query.weight".into(), (layer.qkv.w.i(0..h)? * scale)?),
            ("query.bias".into(), (layer.qkv.b.i(0..h)? * scale)?),
            ("key.weight".into(), layer.qkv.w.i(h..2 * h)?),
            ("key.bias".into(), layer.qkv.b.i(h..2 * h)?),
            ("value.weight".into(), layer.qkv.w.i(2 * h..3 * h)?),
            ("value.bias".into(), layer.qkv.b.i(2 * h..3 * h)?),
            ("attn_out.weight".into(), layer.attn_out.w.clone()),
            ("attn_out.bias".into(), layer.attn_out.b.clone()),
            ("ln1.weight".into(), ln(&layer.ln1, 0)?),
            ("ln1.bias".into(), ln(&layer.ln1, 1)?),
            ("inter.weight".into(), layer.inter.w.clone()),
            ("inter.bias".into(), layer.inter.b.clone()),
            ("out.weight".into(), layer.out.w.clone()),
            ("out.bias".into(), layer.out.b.clone()),
            ("ln2.weight".into(), ln(&layer.ln2, 0)?),
            ("ln2.bias".into(), ln(&layer.ln2, 1)?),
        ])
    }

    /// Token + position + type embeddings, normalised: `[tokens, hidden]`.
    fn embeddings(&self, batch: &Packed) -> Result<Tensor> {
        let t = batch.tokens();
        let dev = &self.device;
        let ids = Tensor::from_slice(&batch.ids, t, dev)?;
        let pos: Vec<u32> = batch.lens.iter().flat_map(|&n| 0..n as u32).collect();
        let pos = Tensor::from_vec(pos, t, dev)?;
        let emb = self.word.index_select(&ids, 0)?;
        let emb_extra = self
            .position
            .index_select(&pos, 0)?
            .broadcast_add(&self.token_type0)?;
        Ok(kernels::add_layer_norm(
            &emb,
            &emb_extra,
            &self.emb_ln,
            self.eps,
        )?)
    }

    /// Self-attention of packed `[T, 3H]` projections through a padded block
    /// (GPU path); returns `[T, H]`.
    fn attention(&self, qkv: &Tensor, g: &Gather, b: usize, l: usize) -> Result<Tensor> {
        let (nh, hd, h) = (self.heads, self.head_dim, self.hidden);
        // [T, 3H] -> [B, L, 3, NH, HD] (padded rows repeat token 0 and are masked).
        let padded = match &g.pad {
            Some(idx) => qkv.index_select(idx, 0)?,
            None => qkv.clone(),
        }
        .reshape((b, l, 3, nh, hd))?;
        let part = |i: usize| -> candle_core::Result<Tensor> {
            padded.i((.., .., i))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = &g.mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * l, h))?;
        Ok(match &g.unpad {
            Some(idx) => ctx.index_select(idx, 0)?,
            None => ctx,
        })
    }
}

/// Index maps between packed tokens and the padded attention block; all
/// `None` when every sequence has the same length (nothing to gather).
struct Gather {
    pad: Option<Tensor>,
    unpad: Option<Tensor>,
    mask: Option<Tensor>,
}

impl Gather {
    fn new(lens: &[usize], dev: &Device) -> candle_core::Result<Self> {
        let l = lens.iter().copied().max().unwrap_or(0);
        if lens.iter().all(|&n| n == l) {
            return Ok(Self {
                pad: None,
                unpad: None,
                mask: None,
            });
        }
        let b = lens.len();
        let mut pad = Vec::with_capacity(b * l);
        let mut unpad = Vec::with_capacity(lens.iter().sum());
        let mut mask = Vec::with_capacity(b * l);
        let mut offset = 0u32;
        for (s, &n) in lens.iter().enumerate() {
            for j in 0..l {
                let real = j < n;
                pad.push(if real { offset + j as u32 } else { 0 });
                mask.push(if real { 0f32 } else { f32::NEG_INFINITY });
            }
            unpad.extend((0..n as u32).map(|j| (s * l) as u32 + j));
            offset += n as u32;
        }
        Ok(Self {
            pad: Some(Tensor::from_vec(pad, b * l, dev)?),
            unpad: Some(Tensor::from_vec(unpad, offset as usize, dev)?),
            mask: Some(Tensor::from_vec(mask, (b, 1, 1, l), dev)?),
        })
    }
}

/// `[B, T]` matrix whose row b averages the tokens of sequence b.
fn mean_pool_matrix(lens: &[usize], dev: &Device) -> candle_core::Result<Tensor> {
    let t: usize = lens.iter().sum();
    let mut m = vec![0f32; lens.len() * t];
    let mut offset = 0;
    for (row, &n) in lens.iter().enumerate() {
        let w = 1.0 / n.max(1) as f32;
        m[row * t + offset..row * t + offset + n].fill(w);
        offset += n;
    }
    Tensor::from_vec(m, (lens.len(), t), dev)
}

/// Mean pooling with candle-transformers' padded `BertModel`: the reference
/// implementation, used by tests and the padding-waste benchmark.
pub fn reference_mean(
    model: &candle_transformers::models::bert::BertModel,
    seqs: &[Vec<u32>],
    dev: &Device,
) -> Result<Tensor> {
    let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * l);
    let mut mask = Vec::with_capacity(seqs.len() * l);
    for s in seqs {
        ids.extend(s.iter().copied().chain(std::iter::repeat_n(0, l - s.len())));
        mask.extend((0..l).map(|j| u32::from(j < s.len())));
    }
    let ids = Tensor::from_vec(ids, (seqs.len(), l), dev)?;
    let mask = Tensor::from_vec(mask, (seqs.len(), l), dev)?;
    let out = model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
    let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let sum = out.broadcast_mul(&maskf)?.sum(1)?;
    Ok(sum.broadcast_div(&maskf.sum(1)?)?)
}
