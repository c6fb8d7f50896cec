//! A trained softmax head on encoder vectors: multinomial logistic regression
//! with candle-nn's AdamW, class weights against imbalance, and early stopping
//! on a stratified validation split. Seeded and reproducible: weights start at
//! zero and the only randomness is the seeded shuffle.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::calibration::{ece, fit_temperature, threshold_for_precision, Threshold};
use super::heads::{prediction, softmax, HeadError, Prediction};

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

/// `softmax(v · W + b)` over the label set.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    labels: Vec<String>,
    dims: usize,
    /// `[dims, classes]`, row-major.
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
        let c = self.labels.len();
        let mut out = self.b.clone();
        for (x, row) in v.iter().zip(self.w.chunks(c)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
        out
    }

    pub fn predict(&self, v: &[f32]) -> Prediction {
        let probs = softmax(&self.logits(v), self.temperature);
        prediction(&self.labels, probs, self.threshold, Vec::new())
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// `w` (`[dims, classes]`, row-major) and `b`, for saving.
    pub fn parameters(&self) -> (&[f32], &[f32]) {
        (&self.w, &self.b)
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
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = weights.index_select(targets, 0)?;
    (picked * &w)?.sum_all()?.neg()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// Runs AdamW from zero weights over `idx` for up to `epochs` epochs;
/// `after_epoch(epoch, w, b)` returns true to stop. Returns the last weights.
#[allow(clippy::too_many_arguments)]
fn fit(
    vectors: &[Vec<f32>],
    target_tensor: &dyn Fn(&[usize]) -> candle_core::Result<Tensor>,
    idx: &mut [usize],
    (dims, classes): (usize, usize),
    cfg: &TrainConfig,
    weights: &Tensor,
    rng: &mut SplitMix,
    epochs: usize,
    mut after_epoch: impl FnMut(usize, &Tensor, &Tensor) -> candle_core::Result<bool>,
) -> candle_core::Result<(Tensor, Tensor)> {
    let dev = Device::Cpu;
    let w = Var::zeros((dims, classes), DType::F32, &dev)?;
    let b = Var::zeros(classes, DType::F32, &dev)?;
    let params = ParamsAdamW {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(vec![w.clone(), b.clone()], params)?;
    for epoch in 0..epochs {
        rng.shuffle(idx);
        for batch in idx.chunks(cfg.batch_size.max(1)) {
            let x = rows(vectors, batch, dims, &dev)?;
            let logits = x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
            opt.backward_step(&loss(&logits, &target_tensor(batch)?, weights)?)?;
        }
        if after_epoch(epoch, w.as_tensor(), b.as_tensor())? {
            break;
        }
    }
    Ok((w.as_tensor().copy()?, b.as_tensor().copy()?))
}

/// Trains a softmax head on `vectors` with `targets[i]` indexing `labels`.
pub fn train_softmax(
    vectors: &[Vec<f32>],
    targets: &[usize],
    labels: Vec<String>,
    cfg: &TrainConfig,
) -> Result<(SoftmaxHead, TrainReport), TrainError> {
    let classes = labels.len();
    if classes < 2 {
        return Err(HeadError::TooFewLabels(classes).into());
    }
    if vectors.len() != targets.len() {
        return Err(HeadError::Mismatch(vectors.len(), targets.len()).into());
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= classes) {
        return Err(TrainError::LabelIndex(bad, classes));
    }
    let dims = vectors.first().map_or(0, Vec::len);
    if let Some(v) = vectors.iter().find(|v| v.len() != dims) {
        return Err(HeadError::Dims(dims, v.len()).into());
    }
    let dev = Device::Cpu;
    let mut rng = SplitMix(cfg.seed);
    let (mut train_idx, val_idx) = stratified_split(targets, classes, cfg.val_fraction, &mut rng);

    let mut counts = vec![0usize; classes];
    train_idx.iter().for_each(|&i| counts[targets[i]] += 1);
    let weights: Vec<f32> = counts
        .iter()
        .map(|&n| {
            if cfg.balance_classes && n > 0 {
                train_idx.len() as f32 / (classes * n) as f32
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

    let (xv, yv) = (
        rows(vectors, &val_idx, dims, &dev)?,
        target_tensor(&val_idx)?,
    );
    let mut best: Option<(f32, usize, Tensor, Tensor)> = None;
    let mut epochs = 0;
    fit(
        vectors,
        &target_tensor,
        &mut train_idx,
        (dims, classes),
        cfg,
        &weights,
        &mut rng,
        cfg.max_epochs,
        |epoch, w, b| {
            epochs = epoch + 1;
            if val_idx.is_empty() {
                best = Some((0.0, epoch, w.copy()?, b.copy()?));
                return Ok(false);
            }
            let val_logits = xv.matmul(w)?.broadcast_add(b)?;
            let val_loss = loss(&val_logits, &yv, &weights)?.to_scalar::<f32>()?;
            match &best {
                Some((l, _, _, _)) if val_loss >= *l => {
                    Ok(epoch - best.as_ref().map_or(0, |x| x.1) >= cfg.patience)
                }
                _ => {
                    best = Some((val_loss, epoch, w.copy()?, b.copy()?));
                    Ok(false)
                }
            }
        },
    )?;
    let best = match best {
        Some(b) => b,
        None => (
            f32::INFINITY,
            0,
            Tensor::zeros((dims, classes), DType::F32, &dev)?,
            Tensor::zeros(classes, DType::F32, &dev)?,
        ),
    };
    let (val_loss, best_epoch, bw, bb) = best;
    let mut head = SoftmaxHead {
        labels,
        dims,
        w: bw.flatten_all()?.to_vec1()?,
        b: bb.to_vec1()?,
        temperature: 1.0,
        threshold: 0.0,
    };
    // Calibrate on the validation split: temperature first, then the
    // threshold for the target precision on the calibrated confidences.
    let val_targets: Vec<usize> = val_idx.iter().map(|&i| targets[i]).collect();
    let val_logits: Vec<Vec<f32>> = val_idx.iter().map(|&i| head.logits(&vectors[i])).collect();
    let judged = |head: &SoftmaxHead| -> Vec<(f32, bool)> {
        val_idx
            .iter()
            .map(|&i| {
                let p = head.predict(&vectors[i]);
                (p.confidence, p.top == head.labels[targets[i]])
            })
            .collect()
    };
    let val_ece_raw = ece(&judged(&head), 15);
    head.temperature = fit_temperature(&val_logits, &val_targets);
    let val_judged = judged(&head);
    let threshold = threshold_for_precision(&val_judged, cfg.target_precision);
    head.threshold = threshold.threshold;
    let val_correct = val_judged.iter().filter(|(_, ok)| *ok).count();
    // Refit on training + validation examples for the epochs that validation
    // chose, keeping the calibration fitted above: with few labels per class
    // the held-back fifth is worth more as training data than as a check.
    let refit = cfg.refit && !val_idx.is_empty();
    if refit {
        let mut all_idx: Vec<usize> = train_idx.iter().chain(&val_idx).copied().collect();
        let (w, b) = fit(
            vectors,
            &target_tensor,
            &mut all_idx,
            (dims, classes),
            cfg,
            &weights,
            &mut rng,
            best_epoch + 1,
            |_, _, _| Ok(false),
        )?;
        head.w = w.flatten_all()?.to_vec1()?;
        head.b = b.to_vec1()?;
    }
    let report = TrainReport {
        epochs,
        best_epoch: best_epoch + 1,
        train_examples: train_idx.len(),
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
