//! Turning scores into confidences a threshold can be set on: temperature
//! scaling fitted on held-out data, expected calibration error, and the
//! threshold that reaches a target precision with the most coverage.

/// Negative log-likelihood of `targets` under `softmax(logits / t)`.
fn nll(logits: &[Vec<f32>], targets: &[usize], t: f32) -> f64 {
    let mut total = 0f64;
    for (l, &y) in logits.iter().zip(targets) {
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = l
            .iter()
            .map(|x| (((x - max) / t) as f64).exp())
            .sum::<f64>()
            .ln();
        total += lse - ((l[y] - max) / t) as f64;
    }
    total / logits.len().max(1) as f64
}

/// The temperature minimising held-out NLL (golden-section search over
/// log t in [-4, 4]; NLL is unimodal in t for a fixed set of logits).
pub fn fit_temperature(logits: &[Vec<f32>], targets: &[usize]) -> f32 {
    if logits.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll(logits, targets, log_t.exp() as f32);
    let (mut a, mut b) = (-4f64, 4f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// Expected calibration error over equal-width confidence bins: the
/// bin-weighted gap between confidence and accuracy.
pub fn ece(predictions: &[(f32, bool)], bins: usize) -> f32 {
    if predictions.is_empty() || bins == 0 {
        return 0.0;
    }
    let mut sum_conf = vec![0f64; bins];
    let mut sum_acc = vec![0f64; bins];
    let mut count = vec![0usize; bins];
    for &(conf, correct) in predictions {
        let b = ((conf.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        sum_conf[b] += conf as f64;
        sum_acc[b] += f64::from(u8::from(correct));
        count[b] += 1;
    }
    let n = predictions.len() as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (sum_conf[b] - sum_acc[b]).abs() / n)
        .sum::<f64>() as f32
}

/// A confidence threshold and what it gives on the data it was chosen on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Threshold {
    pub threshold: f32,
    pub coverage: f32,
    pub precision: f32,
}

/// The lowest threshold whose accepted predictions (confidence ≥ threshold)
/// are at least `target` precise: the most coverage at that precision. When
/// no threshold reaches it, the one with the best precision.
pub fn threshold_for_precision(predictions: &[(f32, bool)], target: f32) -> Threshold {
    let mut sorted: Vec<(f32, bool)> = predictions.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = sorted.len().max(1) as f32;
    let mut best_ok: Option<Threshold> = None;
    let mut best_any = Threshold {
        threshold: 1.0,
        coverage: 0.0,
        precision: 0.0,
    };
    let mut correct = 0usize;
    for (i, &(conf, ok)) in sorted.iter().enumerate() {
        correct += usize::from(ok);
        // Only cut between distinct confidences.
        if sorted.get(i + 1).is_some_and(|next| next.0 == conf) {
            continue;
        }
        let t = Threshold {
            threshold: conf,
            coverage: (i + 1) as f32 / n,
            precision: correct as f32 / (i + 1) as f32,
        };
        if t.precision >= target {
            best_ok = Some(t);
        }
        if t.precision > best_any.precision {
            best_any = t;
        }
    }
    best_ok.unwrap_or(best_any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overconfident_logits_get_a_temperature_above_one() {
        // Logits say ~99.9 % but the model is right 3 times in 4.
        let logits: Vec<Vec<f32>> = (0..400).map(|_| vec![7.0, 0.0]).collect();
        let targets: Vec<usize> = (0..400).map(|i| usize::from(i % 4 == 3)).collect();
        let t = fit_temperature(&logits, &targets);
        // The optimum makes softmax(7/t) = 0.75: t = 7 / ln 3.
        assert!((t - 7.0 / 3f32.ln()).abs() < 0.01, "t = {t}");
        assert!(nll(&logits, &targets, t) < nll(&logits, &targets, 1.0));
    }

    #[test]
    fn ece_is_zero_when_confidence_matches_accuracy_and_large_when_not() {
        let calibrated: Vec<(f32, bool)> = (0..100).map(|i| (0.7, i % 10 < 7)).collect();
        assert!(ece(&calibrated, 10) < 1e-6);
        let overconfident: Vec<(f32, bool)> = (0..100).map(|i| (0.99, i % 2 == 0)).collect();
        assert!((ece(&overconfident, 10) - 0.49).abs() < 1e-4);
    }

    #[test]
    fn threshold_keeps_the_most_coverage_at_the_target_precision() {
        // Confidences 1.0..0.01; the top 50 are right, then every other one.
        let preds: Vec<(f32, bool)> = (0..100)
            .map(|i| (1.0 - i as f32 / 100.0, i < 50 || i % 2 == 0))
            .collect();
        let t = threshold_for_precision(&preds, 0.95);
        assert!(t.precision >= 0.95);
        // 50 right, then +1 right per 2: precision (50 + k) / (50 + 2k) ≥ 0.95 → k ≤ 2.
        assert_eq!((t.coverage * 100.0).round() as usize, 55);
        let strict = threshold_for_precision(&preds, 1.0);
        assert_eq!((strict.coverage * 100.0).round() as usize, 51);
        assert_eq!(strict.precision, 1.0);
    }
}
