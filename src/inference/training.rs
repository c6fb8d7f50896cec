//! A trained softmax head on encoder vectors: multinomial logistic regression
//! with candle-nn's AdamW, class weights against imbalance, and early stopping
//! on a stratified validation split. Seeded and reproducible: weights start at
//! zero (a hidden layer's from the seeded generator) and the only other
//! randomness is the seeded shuffle (and dropout mask).
//!
//! With `hidden_units > 0` the head is a small MLP: one ReLU layer, then the
//! softmax layer. It pays where labelled data is plentiful and the classes
//! are not linearly separable in the encoder's space (sentiment on layer
//! features); with a few examples per label the linear head is as good.

use std::borrow::Cow;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::calibration::{ece, fit_temperature, threshold_for_precision, Threshold};
use super::heads::{affine, argmax, prediction, softmax, HeadError, Prediction};

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub max_epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// How much lower the validation loss must be to count as better.
    pub min_delta: f32,
    /// Share of each class held out for validation.
    pub val_fraction: f64,
    pub seed: u64,
    /// Weight each class by n / (classes × n_class) in the loss.
    pub balance_classes: bool,
    /// Precision the abstain threshold is chosen for, on validation data.
    pub target_precision: f32,
    /// After early stopping, train again on training + validation examples
    /// for the chosen number of epochs.
    pub refit: bool,
    /// Units of a ReLU hidden layer before the softmax layer (0 = linear).
    pub hidden_units: usize,
    /// Share of hidden units dropped per training step (seeded masks).
    pub dropout: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_epochs: 200,
            batch_size: 64,
            lr: 0.01,
            weight_decay: 1e-4,
            patience: 10,
            min_delta: 1e-3,
            val_fraction: 0.2,
            seed: 42,
            balance_classes: true,
            target_precision: 0.95,
            refit: true,
            hidden_units: 0,
            dropout: 0.0,
        }
    }
}

impl TrainConfig {
    /// The settings of an MLP head: `units` hidden units, a smaller step and
    /// dropout, stopping sooner (on tens of thousands of examples it
    /// overfits within a few epochs; on a few hundred it needs many).
    pub fn mlp(units: usize) -> Self {
        Self {
            max_epochs: 150,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 1e-4,
            patience: 3,
            // A refit starts from other random hidden weights, which the
            // calibration fitted on validation would not describe.
            refit: false,
            hidden_units: units,
            dropout: 0.2,
            ..Self::default()
        }
    }
}

/// What training did, for the model card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub epochs: usize,
    pub best_epoch: usize,
    pub train_examples: usize,
    pub val_examples: usize,
    /// Pseudo-labelled examples that trained beside `train_examples`.
    pub pseudo_labelled: usize,
    pub val_loss: f32,
    pub val_accuracy: f32,
    /// Fitted on the validation split (temperature scaling).
    pub temperature: f32,
    /// Expected calibration error on validation, before and after scaling.
    pub val_ece_raw: f32,
    pub val_ece: f32,
    /// The abstain threshold and its coverage and precision on validation.
    pub threshold: Threshold,
    /// Whether the weights were refitted on training + validation examples.
    pub refit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("label index {0} is out of range for {1} labels")]
    LabelIndex(usize, usize),
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
}

/// A ReLU layer in front of the softmax layer: `max(0, v · W + b)`.
#[derive(Debug, Clone)]
pub struct Hidden {
    /// `[dims, units]`, row-major.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Hidden {
    fn apply(&self, v: &[f32]) -> Vec<f32> {
        let mut out = affine(v, &self.w, &self.b);
        out.iter_mut().for_each(|o| *o = o.max(0.0));
        out
    }
}

/// `softmax(v · W + b)` over the label set, or `softmax(relu(v · W1 + b1) ·
/// W + b)` with a hidden layer.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    labels: Vec<String>,
    /// Features read (the input of the hidden layer when there is one).
    dims: usize,
    hidden: Option<Hidden>,
    /// `[hidden units or dims, classes]`, row-major.
    w: Vec<f32>,
    b: Vec<f32>,
    /// Logits are divided by it before the softmax (fitted on validation).
    pub temperature: f32,
    pub threshold: f32,
}

impl SoftmaxHead {
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn logits(&self, v: &[f32]) -> Vec<f32> {
        let h;
        let v = match &self.hidden {
            Some(hidden) => {
                h = hidden.apply(v);
                &h
            }
            None => v,
        };
        affine(v, &self.w, &self.b)
    }

    /// Calibrated probabilities of every label, in `labels()` order.
    pub fn probabilities(&self, v: &[f32]) -> Vec<f32> {
        softmax(&self.logits(v), self.temperature)
    }

    pub fn predict(&self, v: &[f32]) -> Prediction {
        let probs = self.probabilities(v);
        prediction(&self.labels, probs, self.threshold, Vec::new())
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// `w` (`[dims, classes]`, row-major) and `b`, for saving.
    pub fn parameters(&self) -> (&[f32], &[f32]) {
        (&self.w, &self.b)
    }

    pub fn hidden(&self) -> Option<&Hidden> {
        self.hidden.as_ref()
    }

    /// Puts a hidden layer (`[dims, units]`) in front of a head whose
    /// softmax layer reads `units` features.
    pub fn with_hidden(mut self, hidden: Hidden) -> Result<Self, HeadError> {
        let units = hidden.b.len();
        if units != self.dims || units == 0 || !hidden.w.len().is_multiple_of(units) {
            return Err(HeadError::Mismatch(units, self.dims));
        }
        self.dims = hidden.w.len() / units;
        self.hidden = Some(hidden);
        Ok(self)
    }

    /// A head from saved parameters.
    pub fn from_parameters(
        labels: Vec<String>,
        w: Vec<f32>,
        b: Vec<f32>,
        temperature: f32,
        threshold: f32,
    ) -> Result<Self, HeadError> {
        let classes = labels.len();
        if classes < 2 {
            return Err(HeadError::TooFewLabels(classes));
        }
        if b.len() != classes || !w.len().is_multiple_of(classes) {
            return Err(HeadError::Mismatch(b.len(), classes));
        }
        if temperature <= 0.0 || !temperature.is_finite() {
            return Err(HeadError::Temperature(temperature));
        }
        Ok(Self {
            dims: w.len() / classes,
            hidden: None,
            labels,
            w,
            b,
            temperature,
            threshold,
        })
    }
}

/// A small seeded generator (SplitMix64) for shuffles: no extra dependency,
/// same sequence on every platform.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            xs.swap(i, j);
        }
    }
}

/// The validation split `train_softmax` makes for `seed`: (train, validation)
/// indices. Tuning uses it so both hold out the same examples.
pub fn validation_split(
    targets: &[usize],
    classes: usize,
    frac: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    stratified_split(targets, classes, frac, &mut SplitMix(seed))
}

/// Per class, `val_fraction` of its examples (at least one when it has two or
/// more) go to validation.
fn stratified_split(
    targets: &[usize],
    classes: usize,
    frac: f64,
    rng: &mut SplitMix,
) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] == c).collect();
        rng.shuffle(&mut idx);
        let n_val = if idx.len() >= 2 {
            ((idx.len() as f64 * frac).round() as usize).clamp(1, idx.len() - 1)
        } else {
            0
        };
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    (train, val)
}

fn rows(
    vectors: &[Vec<f32>],
    idx: &[usize],
    dims: usize,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let flat: Vec<f32> = idx
        .iter()
        .flat_map(|&i| vectors[i].iter().copied())
        .collect();
    Tensor::from_vec(flat, (idx.len(), dims), dev)
}

/// Class-weighted mean cross-entropy of `logits` against `targets`.
pub(crate) fn loss(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> candle_core::Result<Tensor> {
    weighted_loss(logits, targets, weights, None)
}

/// `loss` with a weight per example on top of the class weights.
fn weighted_loss(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    per_example: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let mut w = weights.index_select(targets, 0)?;
    if let Some(e) = per_example {
        w = (w * e)?;
    }
    (picked * &w)?.sum_all()?.neg()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// Examples labelled by the pipeline rather than by people (labels propagated
/// over unlabelled tickets). They join the training side at `weight` and never
/// the validation split, so early stopping, calibration and the abstain
/// threshold are fitted on human labels only.
#[derive(Debug, Clone, Copy)]
pub struct PseudoLabelled<'a> {
    pub vectors: &'a [Vec<f32>],
    /// Their texts, for lexical features (`lexical::train_mixed`).
    pub texts: &'a [&'a str],
    pub targets: &'a [usize],
    pub weight: f32,
}

/// The weights being trained: an optional hidden layer, then the softmax layer.
struct Params {
    hidden: Option<(Tensor, Tensor)>,
    w: Tensor,
    b: Tensor,
}

impl Params {
    /// Logits of `x` (`[n, dims]`); `mask` multiplies the hidden activations
    /// (dropout while training).
    fn logits(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let x = match &self.hidden {
            Some((w1, b1)) => {
                let h = x.matmul(w1)?.broadcast_add(b1)?.relu()?;
                match mask {
                    Some(m) => (h * m)?,
                    None => h,
                }
            }
            None => x.clone(),
        };
        x.matmul(&self.w)?.broadcast_add(&self.b)
    }

    fn copy(&self) -> candle_core::Result<Self> {
        Ok(Self {
            hidden: match &self.hidden {
                Some((w1, b1)) => Some((w1.copy()?, b1.copy()?)),
                None => None,
            },
            w: self.w.copy()?,
            b: self.b.copy()?,
        })
    }

    fn into_head(self, labels: Vec<String>, dims: usize) -> candle_core::Result<SoftmaxHead> {
        let hidden = match self.hidden {
            Some((w1, b1)) => Some(Hidden {
                w: w1.flatten_all()?.to_vec1()?,
                b: b1.to_vec1()?,
            }),
            None => None,
        };
        Ok(SoftmaxHead {
            labels,
            dims,
            hidden,
            w: self.w.flatten_all()?.to_vec1()?,
            b: self.b.to_vec1()?,
            temperature: 1.0,
            threshold: 0.0,
        })
    }
}

/// A uniform draw in [-1, 1) from the seeded generator.
fn unit_uniform(rng: &mut SplitMix) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Runs AdamW over `idx` for up to `epochs` epochs, from zero weights (a
/// hidden layer from He-uniform weights drawn by `rng`); `after_epoch(epoch,
/// params)` returns true to stop. Returns the last weights.
#[allow(clippy::too_many_arguments)]
fn fit(
    vectors: &[Vec<f32>],
    target_tensor: &dyn Fn(&[usize]) -> candle_core::Result<Tensor>,
    example_weights: &dyn Fn(&[usize]) -> candle_core::Result<Option<Tensor>>,
    idx: &mut [usize],
    (dims, classes): (usize, usize),
    cfg: &TrainConfig,
    weights: &Tensor,
    rng: &mut SplitMix,
    epochs: usize,
    mut after_epoch: impl FnMut(usize, &Params) -> candle_core::Result<bool>,
) -> candle_core::Result<Params> {
    let dev = Device::Cpu;
    let units = cfg.hidden_units;
    let mut vars = Vec::new();
    let hidden = if units > 0 {
        let bound = (6.0 / dims as f32).sqrt();
        let init: Vec<f32> = (0..dims * units)
            .map(|_| unit_uniform(rng) * bound)
            .collect();
        let w1 = Var::from_tensor(&Tensor::from_vec(init, (dims, units), &dev)?)?;
        let b1 = Var::zeros(units, DType::F32, &dev)?;
        vars.extend([w1.clone(), b1.clone()]);
        Some((w1, b1))
    } else {
        None
    };
    // The softmax layer reads the hidden units, or the features themselves.
    let inputs = if units > 0 { units } else { dims };
    let w = Var::zeros((inputs, classes), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    vars.extend([w.clone(), b.clone()]);
    let params = ParamsAdamW {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars, params)?;
    let current = || Params {
        hidden: hidden
            .as_ref()
            .map(|(w1, b1)| (w1.as_tensor().clone(), b1.as_tensor().clone())),
        w: w.as_tensor().clone(),
        b: b.as_tensor().clone(),
    };
    let keep = 1.0 - cfg.dropout.clamp(0.0, 0.9);
    for epoch in 0..epochs {
        rng.shuffle(idx);
        for batch in idx.chunks(cfg.batch_size.max(1)) {
            let x = rows(vectors, batch, dims, &dev)?;
            let mask = if units > 0 && keep < 1.0 {
                let m: Vec<f32> = (0..batch.len() * units)
                    .map(|_| {
                        if (unit_uniform(rng) + 1.0) / 2.0 < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Some(Tensor::from_vec(m, (batch.len(), units), &dev)?)
            } else {
                None
            };
            let logits = current().logits(&x, mask.as_ref())?;
            opt.backward_step(&weighted_loss(
                &logits,
                &target_tensor(batch)?,
                weights,
                example_weights(batch)?.as_ref(),
            )?)?;
        }
        if after_epoch(epoch, &current())? {
            break;
        }
    }
    current().copy()
}

/// Trains a softmax head on `vectors` with `targets[i]` indexing `labels`.
pub fn train_softmax(
    vectors: &[Vec<f32>],
    targets: &[usize],
    labels: Vec<String>,
    cfg: &TrainConfig,
) -> Result<(SoftmaxHead, TrainReport), TrainError> {
    train_softmax_with(vectors, targets, labels, cfg, None)
}

/// `train_softmax` with pseudo-labelled examples added to the training side.
/// Without them it is `train_softmax` exactly (same split, same steps).
pub fn train_softmax_with(
    vectors: &[Vec<f32>],
    targets: &[usize],
    labels: Vec<String>,
    cfg: &TrainConfig,
    pseudo: Option<PseudoLabelled<'_>>,
) -> Result<(SoftmaxHead, TrainReport), TrainError> {
    let classes = labels.len();
    if classes < 2 {
        return Err(HeadError::TooFewLabels(classes).into());
    }
    let pseudo = pseudo.filter(|p| !p.vectors.is_empty());
    for (v, t) in std::iter::once((vectors, targets)).chain(pseudo.map(|p| (p.vectors, p.targets)))
    {
        if v.len() != t.len() {
            return Err(HeadError::Mismatch(v.len(), t.len()).into());
        }
        if let Some(&bad) = t.iter().find(|&&t| t >= classes) {
            return Err(TrainError::LabelIndex(bad, classes));
        }
    }
    let dims = vectors.first().map_or(0, Vec::len);
    let all_vectors = pseudo.map(|p| p.vectors).unwrap_or_default();
    if let Some(v) = vectors.iter().chain(all_vectors).find(|v| v.len() != dims) {
        return Err(HeadError::Dims(dims, v.len()).into());
    }
    let dev = Device::Cpu;
    let mut rng = SplitMix(cfg.seed);
    // The split is drawn over the human labels alone; pseudo-labelled
    // examples (indices from `labelled` on) only ever train.
    let (mut train_idx, val_idx) = stratified_split(targets, classes, cfg.val_fraction, &mut rng);
    let labelled = vectors.len();
    let pseudo_weight = pseudo.map_or(1.0, |p| p.weight);
    let (vectors, targets): (Cow<[Vec<f32>]>, Cow<[usize]>) = match pseudo {
        Some(p) => {
            train_idx.extend(labelled..labelled + p.vectors.len());
            let v: Vec<Vec<f32>> = vectors.iter().chain(p.vectors).cloned().collect();
            let t: Vec<usize> = targets.iter().chain(p.targets).copied().collect();
            (v.into(), t.into())
        }
        None => (vectors.into(), targets.into()),
    };
    let (vectors, targets) = (&*vectors, &*targets);
    let example_weight = |i: usize| if i < labelled { 1.0 } else { pseudo_weight };

    let mut counts = vec![0f32; classes];
    train_idx
        .iter()
        .for_each(|&i| counts[targets[i]] += example_weight(i));
    let total: f32 = counts.iter().sum();
    let weights: Vec<f32> = counts
        .iter()
        .map(|&n| {
            if cfg.balance_classes && n > 0.0 {
                total / (classes as f32 * n)
            } else {
                1.0
            }
        })
        .collect();
    let weights = Tensor::from_vec(weights, classes, &dev)?;
    let target_tensor = |idx: &[usize]| {
        Tensor::from_vec(
            idx.iter().map(|&i| targets[i] as u32).collect::<Vec<_>>(),
            idx.len(),
            &dev,
        )
    };
    let example_weights = |idx: &[usize]| -> candle_core::Result<Option<Tensor>> {
        if pseudo.is_none() {
            return Ok(None);
        }
        let w: Vec<f32> = idx.iter().map(|&i| example_weight(i)).collect();
        Tensor::from_vec(w, idx.len(), &dev).map(Some)
    };

    let (xv, yv) = (
        rows(vectors, &val_idx, dims, &dev)?,
        target_tensor(&val_idx)?,
    );
    let mut best: Option<(f32, usize, Params)> = None;
    let mut epochs = 0;
    let last = fit(
        vectors,
        &target_tensor,
        &example_weights,
        &mut train_idx,
        (dims, classes),
        cfg,
        &weights,
        &mut rng,
        cfg.max_epochs,
        |epoch, p| {
            epochs = epoch + 1;
            if val_idx.is_empty() {
                best = Some((0.0, epoch, p.copy()?));
                return Ok(false);
            }
            let val_logits = p.logits(&xv, None)?;
            let val_loss = loss(&val_logits, &yv, &weights)?.to_scalar::<f32>()?;
            match &best {
                Some((l, _, _)) if val_loss >= *l => {
                    Ok(epoch - best.as_ref().map_or(0, |x| x.1) >= cfg.patience)
                }
                _ => {
                    best = Some((val_loss, epoch, p.copy()?));
                    Ok(false)
                }
            }
        },
    )?;
    // No epoch at all (max_epochs 0): the starting weights.
    let (val_loss, best_epoch, params) = best.unwrap_or((f32::INFINITY, 0, last));
    // Validation logits once, as one matmul (an MLP head's hidden layer is
    // the cost); calibration reads them at each temperature.
    let val_logits: Vec<Vec<f32>> = if val_idx.is_empty() {
        Vec::new()
    } else {
        params.logits(&xv, None)?.to_vec2()?
    };
    let mut head = params.into_head(labels, dims)?;
    // Calibrate on the validation split: temperature first, then the
    // threshold for the target precision on the calibrated confidences.
    let val_targets: Vec<usize> = val_idx.iter().map(|&i| targets[i]).collect();
    let judged = |temperature: f32| -> Vec<(f32, bool)> {
        val_logits
            .iter()
            .zip(&val_targets)
            .map(|(l, &y)| {
                let probs = softmax(l, temperature);
                let top = argmax(&probs);
                (probs[top], top == y)
            })
            .collect()
    };
    let val_ece_raw = ece(&judged(head.temperature), 15);
    head.temperature = fit_temperature(&val_logits, &val_targets);
    let val_judged = judged(head.temperature);
    let threshold = threshold_for_precision(&val_judged, cfg.target_precision);
    head.threshold = threshold.threshold;
    let val_correct = val_judged.iter().filter(|(_, ok)| *ok).count();
    // Refit on training + validation examples for the epochs that validation
    // chose, keeping the calibration fitted above: with few labels per class
    // the held-back fifth is worth more as training data than as a check.
    let refit = cfg.refit && !val_idx.is_empty();
    if refit {
        let mut all_idx: Vec<usize> = train_idx.iter().chain(&val_idx).copied().collect();
        let fitted = fit(
            vectors,
            &target_tensor,
            &example_weights,
            &mut all_idx,
            (dims, classes),
            cfg,
            &weights,
            &mut rng,
            best_epoch + 1,
            |_, _| Ok(false),
        )?;
        let (temperature, threshold) = (head.temperature, head.threshold);
        head = fitted.into_head(head.labels, dims)?;
        (head.temperature, head.threshold) = (temperature, threshold);
    }
    let report = TrainReport {
        epochs,
        best_epoch: best_epoch + 1,
        train_examples: train_idx.iter().filter(|&&i| i < labelled).count(),
        pseudo_labelled: targets.len() - labelled,
        val_examples: val_idx.len(),
        val_loss,
        val_accuracy: if val_idx.is_empty() {
            f32::NAN
        } else {
            val_correct as f32 / val_idx.len() as f32
        },
        temperature: head.temperature,
        val_ece_raw,
        val_ece: ece(&val_judged, 15),
        threshold,
        refit,
    };
    Ok((head, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three clusters around one-hot centres with uniform noise of ±0.2
    /// (separable) from the seeded generator.
    fn clusters(n_per: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        noisy_clusters(n_per, 0.2)
    }

    fn noisy_clusters(n_per: usize, spread: f32) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix(7);
        let centres = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..n_per {
                let noise =
                    |r: &mut SplitMix| ((r.next_u64() % 1000) as f32 / 1000.0 * 2.0 - 1.0) * spread;
                xs.push(centre.iter().map(|x| x + noise(&mut rng)).collect());
                ys.push(c);
            }
        }
        (xs, ys)
    }

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn learns_separable_classes() {
        let (xs, ys) = clusters(30);
        let cfg = TrainConfig {
            lr: 0.1,
            max_epochs: 60,
            ..Default::default()
        };
        let (head, report) = train_softmax(&xs, &ys, labels(), &cfg).unwrap();
        assert_eq!(report.val_examples, 18);
        assert!(report.refit);
        let no_refit = TrainConfig {
            refit: false,
            ..cfg.clone()
        };
        let (held, _) = train_softmax(&xs, &ys, labels(), &no_refit).unwrap();
        assert_ne!(
            head.logits(&[0.5, 0.5, 0.0]),
            held.logits(&[0.5, 0.5, 0.0]),
            "the refit saw the validation examples too"
        );
        assert!(report.val_accuracy > 0.99, "{report:?}");
        assert_eq!(head.predict(&[0.9, 0.1, 0.0]).top, "a");
        assert_eq!(head.predict(&[0.0, 0.1, 0.95]).top, "c");
    }

    #[test]
    fn stops_early_when_validation_loss_stops_improving() {
        // Overlapping classes: the validation loss bottoms out well before 200 epochs.
        let (xs, ys) = noisy_clusters(30, 1.5);
        let cfg = TrainConfig {
            lr: 0.1,
            ..Default::default()
        };
        let (_, report) = train_softmax(&xs, &ys, labels(), &cfg).unwrap();
        assert!(
            report.epochs < 200,
            "early stopping never fired: {report:?}"
        );
        assert_eq!(
            report.epochs,
            report.best_epoch + cfg.patience,
            "{report:?}"
        );
    }

    #[test]
    fn training_is_reproducible_for_a_seed() {
        let (xs, ys) = clusters(20);
        let cfg = TrainConfig {
            max_epochs: 15,
            ..Default::default()
        };
        let (a, _) = train_softmax(&xs, &ys, labels(), &cfg).unwrap();
        let (b, _) = train_softmax(&xs, &ys, labels(), &cfg).unwrap();
        assert_eq!(a.logits(&[0.3, 0.3, 0.4]), b.logits(&[0.3, 0.3, 0.4]));
    }

    /// XOR: the label is whether both coordinates have the same sign. No line
    /// splits it; one hidden layer does.
    fn xor(n: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = SplitMix(11);
        (0..n)
            .map(|_| {
                let (x, y) = (unit_uniform(&mut rng), unit_uniform(&mut rng));
                (vec![x, y], usize::from(x * y < 0.0))
            })
            .unzip()
    }

    #[test]
    fn a_hidden_layer_learns_what_a_linear_head_cannot() {
        let (xs, ys) = xor(400);
        let two = || vec!["same".to_string(), "different".to_string()];
        let linear = TrainConfig {
            lr: 0.05,
            ..Default::default()
        };
        let (_, lin) = train_softmax(&xs, &ys, two(), &linear).unwrap();
        let mlp = TrainConfig {
            lr: 0.01,
            max_epochs: 300,
            patience: 30,
            ..TrainConfig::mlp(32)
        };
        let (head, report) = train_softmax(&xs, &ys, two(), &mlp).unwrap();
        assert!(lin.val_accuracy < 0.75, "linear: {lin:?}");
        assert!(report.val_accuracy > 0.93, "mlp: {report:?}");
        assert_eq!(head.hidden().map(|h| h.b.len()), Some(32));
        assert_eq!(head.dims(), 2);
        assert_eq!(head.predict(&[0.7, 0.6]).top, "same");
        assert_eq!(head.predict(&[-0.7, 0.6]).top, "different");
        assert_eq!(head.predict(&[-0.6, -0.8]).top, "same");
        // Seeded: the same hidden weights, dropout masks and shuffles.
        let (again, _) = train_softmax(&xs, &ys, two(), &mlp).unwrap();
        assert_eq!(head.logits(&[0.2, -0.9]), again.logits(&[0.2, -0.9]));
    }

    /// Pseudo-labelled examples train at their weight and never validate.
    /// Here 20 of them sit on class a's centre labelled b: at full weight
    /// they outvote the 4 human examples of a, at 1/1000 they do not (class
    /// balancing off, which would otherwise scale class b down to match).
    #[test]
    fn pseudo_labelled_examples_train_at_their_weight_and_never_validate() {
        let (xs, ys) = clusters(5);
        let cfg = TrainConfig {
            lr: 0.05,
            balance_classes: false,
            ..Default::default()
        };
        let (plain, plain_report) = train_softmax(&xs, &ys, labels(), &cfg).unwrap();
        let (same, _) = train_softmax_with(&xs, &ys, labels(), &cfg, None).unwrap();
        assert_eq!(
            plain.logits(&[0.3, 0.2, 0.1]),
            same.logits(&[0.3, 0.2, 0.1])
        );

        let (wrong, _) = noisy_clusters(20, 0.05);
        let wrong = &wrong[..20]; // around class a's centre
        let as_b = vec![1; wrong.len()];
        let texts = vec![""; wrong.len()];
        let with = |weight: f32| {
            let pseudo = PseudoLabelled {
                vectors: wrong,
                texts: &texts,
                targets: &as_b,
                weight,
            };
            train_softmax_with(&xs, &ys, labels(), &cfg, Some(pseudo)).unwrap()
        };
        let (heavy, report) = with(1.0);
        assert_eq!(heavy.predict(&[1.0, 0.0, 0.0]).top, "b");
        assert_eq!(
            (
                report.train_examples,
                report.val_examples,
                report.pseudo_labelled
            ),
            (plain_report.train_examples, plain_report.val_examples, 20)
        );
        // Validation is class a's human example, which the pseudo labels
        // now contradict: its loss says so.
        assert!(report.val_loss > plain_report.val_loss, "{report:?}");
        let (light, _) = with(0.001);
        assert_eq!(light.predict(&[1.0, 0.0, 0.0]).top, "a");

        let bad = PseudoLabelled {
            vectors: wrong,
            texts: &texts,
            targets: &as_b[..3],
            weight: 1.0,
        };
        assert!(matches!(
            train_softmax_with(&xs, &ys, labels(), &cfg, Some(bad)),
            Err(TrainError::Head(HeadError::Mismatch(20, 3)))
        ));
    }

    #[test]
    fn bad_training_data_is_an_error() {
        let (xs, ys) = clusters(5);
        assert!(matches!(
            train_softmax(&xs, &ys[..3], labels(), &TrainConfig::default()),
            Err(TrainError::Head(HeadError::Mismatch(15, 3)))
        ));
        let mut bad = ys.clone();
        bad[0] = 9;
        assert!(matches!(
            train_softmax(&xs, &bad, labels(), &TrainConfig::default()),
            Err(TrainError::LabelIndex(9, 3))
        ));
    }
}
