//! Tuning the encoder's top layer(s) for one task: a branch.
//!
//! The base encoder stays frozen (its vectors serve KB and similar-ticket
//! search); a copy of its top `k` layers is trained with a softmax head on
//! the task's labels, through candle's autograd. At prediction time the base
//! pass also yields the hidden states entering those layers, and only the
//! `k` tuned layers run again: a triage costs (n + k) / n encoder layers.
//!
//! The layer here is written with differentiable candle ops on padded
//! batches (training); inference runs the same weights through the packed
//! kernels (`PackedBert::forward_top`).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::inference::training::{loss, validation_split, SplitMix};

#[derive(Debug, Clone)]
pub struct TuneConfig {
    pub max_epochs: usize,
    pub batch_size: usize,
    /// Learning rate of the layer's weights.
    pub lr_layer: f64,
    /// Learning rate of the head trained with it.
    pub lr_head: f64,
    pub weight_decay: f64,
    pub patience: usize,
    /// Epochs of the head alone on the frozen layer before tuning starts.
    pub warmup_epochs: usize,
    pub val_fraction: f64,
    pub seed: u64,
    /// SetFit-style objective: cosine of same-label pairs towards 1, of
    /// different-label pairs towards 0, on label-balanced batches; the head
    /// is trained afterwards on the tuned vectors.
    pub contrastive: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            max_epochs: 12,
            batch_size: 32,
            lr_layer: 1e-4,
            lr_head: 1e-2,
            weight_decay: 1e-2,
            patience: 2,
            warmup_epochs: 3,
            val_fraction: 0.2,
            seed: 42,
            contrastive: false,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TuneReport {
    pub layers: usize,
    pub epochs: usize,
    pub best_epoch: usize,
    pub val_loss_before: f32,
    pub val_loss: f32,
    pub val_accuracy: f32,
    pub seconds: f32,
}

const NAMES: [&str; 16] = [
    "query.weight",
    "query.bias",
    "key.weight",
    "key.bias",
    "value.weight",
    "value.bias",
    "attn_out.weight",
    "attn_out.bias",
    "ln1.weight",
    "ln1.bias",
    "inter.weight",
    "inter.bias",
    "out.weight",
    "out.bias",
    "ln2.weight",
    "ln2.bias",
];

/// One trainable layer: its vars in `NAMES` order.
struct TrainLayer {
    vars: Vec<Var>,
}

impl TrainLayer {
    fn new(weights: &[(String, Tensor)]) -> candle_core::Result<Self> {
        let vars = NAMES
            .iter()
            .map(|n| {
                let t = weights
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, t)| t)
                    .ok_or_else(|| candle_core::Error::Msg(format!("layer weights lack {n}")))?;
                Var::from_tensor(&t.copy()?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { vars })
    }

    fn v(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    /// `x`: `[B, T, H]`; `mask`: additive `[B, 1, 1, T]`.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        heads: usize,
        eps: f32,
    ) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let hd = h / heads;
        let lin = |x: &Tensor, w: usize| -> candle_core::Result<Tensor> {
            let (b, t, din) = x.dims3()?;
            x.reshape((b * t, din))?
                .matmul(&self.v(w).t()?)?
                .broadcast_add(self.v(w + 1))?
                .reshape((b, t, ()))
        };
        let split = |x: Tensor| -> candle_core::Result<Tensor> {
            x.reshape((b, t, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = (split(lin(x, 0)?)? / (hd as f64).sqrt())?;
        let k = split(lin(x, 2)?)?;
        let v = split(lin(x, 4)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, h))?;
        let a = lin(&ctx, 6)?;
        let x1 = candle_nn::ops::layer_norm_slow(&(a + x)?, self.v(8), self.v(9), eps)?;
        let i = lin(&x1, 10)?.gelu_erf()?;
        let o = lin(&i, 12)?;
        candle_nn::ops::layer_norm_slow(&(o + x1)?, self.v(14), self.v(15), eps)
    }

    fn weights(&self) -> candle_core::Result<Vec<(String, Tensor)>> {
        NAMES
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.to_string(), v.as_tensor().copy()?)))
            .collect()
    }
}

/// A padded batch: `[B, T, H]` states, the additive mask and the pooling mask.
fn batch(
    mids: &[Vec<f32>],
    idx: &[usize],
    h: usize,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let t = idx
        .iter()
        .map(|&i| mids[i].len() / h)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut x = vec![0f32; idx.len() * t * h];
    let mut mask = vec![-1e4f32; idx.len() * t];
    let mut keep = vec![0f32; idx.len() * t];
    for (row, &i) in idx.iter().enumerate() {
        let n = mids[i].len() / h;
        x[row * t * h..row * t * h + n * h].copy_from_slice(&mids[i]);
        mask[row * t..row * t + n].fill(0.0);
        keep[row * t..row * t + n].fill(1.0);
    }
    Ok((
        Tensor::from_vec(x, (idx.len(), t, h), dev)?,
        Tensor::from_vec(mask, (idx.len(), 1, 1, t), dev)?,
        Tensor::from_vec(keep, (idx.len(), t, 1), dev)?,
    ))
}

/// Masked mean over tokens, then L2 normalisation: `[B, H]`.
fn pool(x: &Tensor, keep: &Tensor) -> candle_core::Result<Tensor> {
    let sum = x.broadcast_mul(keep)?.sum(1)?;
    let mean = sum.broadcast_div(&keep.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    mean.broadcast_div(&(norm + 1e-12)?)
}

/// Mean squared gap between pairwise cosines and same-label (1) / other (0).
fn pair_loss(u: &Tensor, labels: &[usize], dev: &Device) -> candle_core::Result<Tensor> {
    let n = labels.len();
    let sims = u.matmul(&u.t()?)?;
    let mut y = vec![0f32; n * n];
    let mut off = vec![1f32; n * n];
    for i in 0..n {
        for j in 0..n {
            y[i * n + j] = f32::from(labels[i] == labels[j]);
        }
        off[i * n + i] = 0.0;
    }
    let y = Tensor::from_vec(y, (n, n), dev)?;
    let off = Tensor::from_vec(off, (n, n), dev)?;
    let gap = ((sims - y)?.sqr()? * &off)?;
    gap.sum_all()? / ((n * n - n).max(1) as f64)
}

/// Tunes a copy of the top layer. `layer` is its base weights
/// (`PackedBert::layer_weights`), `mids[i]` example i's hidden states
/// entering it (`[len, H]` row-major), `targets[i]` its label index.
/// Returns the tuned layer's weights (base weights if tuning never beat them
/// on validation) and what happened.
#[allow(clippy::too_many_arguments)]
pub fn tune_top_layer(
    layer: &[(String, Tensor)],
    heads: usize,
    eps: f32,
    mids: &[Vec<f32>],
    targets: &[usize],
    classes: usize,
    cfg: &TuneConfig,
    mut progress: impl FnMut(usize, usize),
) -> candle_core::Result<(Vec<(String, Tensor)>, TuneReport)> {
    let started = std::time::Instant::now();
    let dev = Device::Cpu;
    let h = layer
        .iter()
        .find(|(n, _)| n == "query.weight")
        .map(|(_, t)| t.dim(0))
        .transpose()?
        .unwrap_or(0);
    let (mut train_idx, val_idx) = validation_split(targets, classes, cfg.val_fraction, cfg.seed);
    let mut counts = vec![0usize; classes];
    train_idx.iter().for_each(|&i| counts[targets[i]] += 1);
    let weights: Vec<f32> = counts
        .iter()
        .map(|&n| {
            if n > 0 {
                train_idx.len() as f32 / (classes * n) as f32
            } else {
                1.0
            }
        })
        .collect();
    let class_w = Tensor::from_vec(weights, classes, &dev)?;
    let tt = |idx: &[usize]| {
        Tensor::from_vec(
            idx.iter().map(|&i| targets[i] as u32).collect::<Vec<_>>(),
            idx.len(),
            &dev,
        )
    };

    let tl = TrainLayer::new(layer)?;
    // The head starts at zero; pooled vectors are unit length, so logits
    // need a scale: learnable, starting at 10.
    let w = Var::zeros((h, classes), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    let scale = Var::from_tensor(&Tensor::new(&[10f32], &dev)?)?;
    let mut opt_layer = AdamW::new(
        tl.vars.clone(),
        ParamsAdamW {
            lr: cfg.lr_layer,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let mut opt_head = AdamW::new(
        vec![w.clone(), b.clone(), scale.clone()],
        ParamsAdamW {
            lr: cfg.lr_head,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let logits =
        |x: &Tensor, mask: &Tensor, keep: &Tensor, frozen: bool| -> candle_core::Result<Tensor> {
            let y = if frozen {
                // The base layer: the same weights, no tuning yet.
                tl.forward(x, mask, heads, eps)?.detach()
            } else {
                tl.forward(x, mask, heads, eps)?
            };
            pool(&y, keep)?
                .matmul(w.as_tensor())?
                .broadcast_mul(scale.as_tensor())?
                .broadcast_add(b.as_tensor())
        };
    let eval = |frozen: bool| -> candle_core::Result<(f32, f32)> {
        if val_idx.is_empty() {
            return Ok((0.0, 0.0));
        }
        if cfg.contrastive {
            let (x, mask, keep) = batch(mids, &val_idx, h, &dev)?;
            let u = pool(&tl.forward(&x, &mask, heads, eps)?.detach(), &keep)?;
            let labels: Vec<usize> = val_idx.iter().map(|&i| targets[i]).collect();
            let _ = frozen;
            return Ok((pair_loss(&u, &labels, &dev)?.to_scalar::<f32>()?, 0.0));
        }
        let (mut total, mut correct) = (0f32, 0usize);
        for chunk in val_idx.chunks(128) {
            let (x, mask, keep) = batch(mids, chunk, h, &dev)?;
            let lg = logits(&x, &mask, &keep, frozen)?.detach();
            total += loss(&lg, &tt(chunk)?, &class_w)?.to_scalar::<f32>()? * chunk.len() as f32;
            let pred = lg.argmax(1)?.to_vec1::<u32>()?;
            correct += pred
                .iter()
                .zip(chunk)
                .filter(|(p, &i)| **p as usize == targets[i])
                .count();
        }
        Ok((
            total / val_idx.len() as f32,
            correct as f32 / val_idx.len() as f32,
        ))
    };

    let mut rng = SplitMix::new(cfg.seed ^ 0x7475_6e65);
    // Warm the head on the frozen layer first, so tuning starts from a
    // sensible classifier instead of pushing the layer around at random.
    for _ in 0..cfg.warmup_epochs {
        rng.shuffle(&mut train_idx);
        for chunk in train_idx.chunks(cfg.batch_size.max(1)) {
            let (x, mask, keep) = batch(mids, chunk, h, &dev)?;
            let l = loss(&logits(&x, &mask, &keep, true)?, &tt(chunk)?, &class_w)?;
            opt_head.backward_step(&l)?;
        }
    }
    let (val_loss_before, _) = eval(true)?;
    let mut best = (val_loss_before, 0usize, 0f32, tl.weights()?);
    let mut epochs = 0;
    let steps_per_epoch = train_idx.len().div_ceil(cfg.batch_size.max(1));
    for epoch in 1..=cfg.max_epochs {
        epochs = epoch;
        rng.shuffle(&mut train_idx);
        if cfg.contrastive {
            // Interleave by label in pairs, so each batch holds same-label pairs.
            let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); classes];
            train_idx.iter().for_each(|&i| by_label[targets[i]].push(i));
            let mut pairs: Vec<[usize; 2]> = by_label
                .iter()
                .flat_map(|v| v.chunks_exact(2).map(|c| [c[0], c[1]]))
                .collect();
            rng.shuffle(&mut pairs);
            train_idx = pairs.into_iter().flatten().collect();
        }
        for (s, chunk) in train_idx.chunks(cfg.batch_size.max(1)).enumerate() {
            let (x, mask, keep) = batch(mids, chunk, h, &dev)?;
            let l = if cfg.contrastive {
                let u = pool(&tl.forward(&x, &mask, heads, eps)?, &keep)?;
                let labels: Vec<usize> = chunk.iter().map(|&i| targets[i]).collect();
                pair_loss(&u, &labels, &dev)?
            } else {
                loss(&logits(&x, &mask, &keep, false)?, &tt(chunk)?, &class_w)?
            };
            let grads = l.backward()?;
            opt_layer.step(&grads)?;
            opt_head.step(&grads)?;
            progress(
                (epoch - 1) * steps_per_epoch + s + 1,
                cfg.max_epochs * steps_per_epoch,
            );
        }
        let (vl, va) = eval(false)?;
        tracing::debug!(epoch, val_loss = vl, val_accuracy = va, "tuning");
        if std::env::var_os("TUNE_TRACE").is_some() {
            eprintln!(
                "epoch {epoch}: val loss {vl:.4} accuracy {va:.4} (before {val_loss_before:.4})"
            );
        }
        if vl < best.0 {
            best = (vl, epoch, va, tl.weights()?);
        } else if epoch - best.1 >= cfg.patience {
            break;
        }
    }
    let (val_loss, best_epoch, val_accuracy, tuned) = best;
    Ok((
        tuned,
        TuneReport {
            layers: 1,
            epochs,
            best_epoch,
            val_loss_before,
            val_loss,
            val_accuracy,
            seconds: started.elapsed().as_secs_f32(),
        },
    ))
}
