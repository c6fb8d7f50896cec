//! Label heads that read one encoder vector: the two kinds that need no
//! training, for label sets with no or few labelled examples.
//!
//! - `ZeroShotHead`: cosine to each label's embedded description, for a
//!   brand-new tenant.
//! - `KnnHead`: the nearest labelled examples vote, weighted by similarity;
//!   the neighbours are returned as the prediction's evidence.
//!
//! Both turn scores into probabilities with a softmax at a temperature, and
//! answer "abstain" (no label: route to a human) below a confidence threshold.
//! Vectors are expected L2-normalised, so a dot product is the cosine.

use serde::Serialize;

/// One class and its probability.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scored {
    pub label: String,
    pub probability: f32,
}

/// A labelled example that supports a prediction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    pub text: String,
    pub label: String,
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The chosen label, or `None` when the head abstains.
    pub label: Option<String>,
    /// The most probable label, even when abstaining.
    pub top: String,
    pub confidence: f32,
    /// Every class, most probable first.
    pub probabilities: Vec<Scored>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadError {
    #[error("a head needs at least two labels, got {0}")]
    TooFewLabels(usize),
    #[error("{0} vectors for {1} items")]
    Mismatch(usize, usize),
    #[error("vectors of different dimensions ({0} and {1})")]
    Dims(usize, usize),
    #[error("temperature must be positive, got {0}")]
    Temperature(f32),
    #[error("no candidate lexical weights to choose from")]
    NoCandidates,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Index of the largest of `xs` (the first of equals; 0 when empty).
pub(crate) fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

/// `b + v · w`, with `w` row-major `[v.len(), b.len()]` (zero inputs skipped:
/// lexical features are mostly zeros).
pub(crate) fn affine(v: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = b.to_vec();
    for (x, row) in v.iter().zip(w.chunks(b.len().max(1))) {
        if *x != 0.0 {
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
    }
    out
}

/// Softmax of `scores / temperature`, stable for any scale.
pub(crate) fn softmax(scores: &[f32], temperature: f32) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores
        .iter()
        .map(|s| ((s - max) / temperature).exp())
        .collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn check_dims(vectors: &[Vec<f32>]) -> Result<(), HeadError> {
    let d = vectors.first().map_or(0, Vec::len);
    match vectors.iter().find(|v| v.len() != d) {
        Some(v) => Err(HeadError::Dims(d, v.len())),
        None => Ok(()),
    }
}

pub(crate) fn prediction(
    labels: &[String],
    probs: Vec<f32>,
    threshold: f32,
    evidence: Vec<Evidence>,
) -> Prediction {
    let mut probabilities: Vec<Scored> = labels
        .iter()
        .zip(probs)
        .map(|(l, p)| Scored {
            label: l.clone(),
            probability: p,
        })
        .collect();
    probabilities.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let best = &probabilities[0];
    Prediction {
        label: (best.probability >= threshold).then(|| best.label.clone()),
        top: best.label.clone(),
        confidence: best.probability,
        probabilities,
        evidence,
    }
}

/// Cosine to embedded label descriptions.
#[derive(Debug, Clone)]
pub struct ZeroShotHead {
    labels: Vec<String>,
    vectors: Vec<Vec<f32>>,
    /// Cosines differ by hundredths; a small temperature spreads them.
    pub temperature: f32,
    pub threshold: f32,
}

impl ZeroShotHead {
    /// `vectors[i]` is the embedding of label i's description.
    pub fn new(labels: Vec<String>, vectors: Vec<Vec<f32>>) -> Result<Self, HeadError> {
        if labels.len() < 2 {
            return Err(HeadError::TooFewLabels(labels.len()));
        }
        if vectors.len() != labels.len() {
            return Err(HeadError::Mismatch(vectors.len(), labels.len()));
        }
        check_dims(&vectors)?;
        Ok(Self {
            labels,
            vectors,
            temperature: 0.05,
            threshold: 0.0,
        })
    }

    pub fn with_calibration(mut self, temperature: f32, threshold: f32) -> Result<Self, HeadError> {
        if temperature <= 0.0 || !temperature.is_finite() {
            return Err(HeadError::Temperature(temperature));
        }
        self.temperature = temperature;
        self.threshold = threshold;
        Ok(self)
    }

    pub fn predict(&self, v: &[f32]) -> Prediction {
        let scores: Vec<f32> = self.vectors.iter().map(|l| dot(l, v)).collect();
        prediction(
            &self.labels,
            softmax(&scores, self.temperature),
            self.threshold,
            Vec::new(),
        )
    }
}

/// Similarity-weighted vote of the k nearest labelled examples.
#[derive(Debug, Clone)]
pub struct KnnHead {
    labels: Vec<String>,
    texts: Vec<String>,
    example_labels: Vec<usize>,
    vectors: Vec<Vec<f32>>,
    pub k: usize,
    pub temperature: f32,
    pub threshold: f32,
}

impl KnnHead {
    /// `examples` are (text, label) pairs; `vectors[i]` embeds `examples[i].0`.
    pub fn new(examples: &[(String, String)], vectors: Vec<Vec<f32>>) -> Result<Self, HeadError> {
        if vectors.len() != examples.len() {
            return Err(HeadError::Mismatch(vectors.len(), examples.len()));
        }
        check_dims(&vectors)?;
        let mut labels: Vec<String> = examples.iter().map(|(_, l)| l.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(HeadError::TooFewLabels(labels.len()));
        }
        let example_labels = examples
            .iter()
            .map(|(_, l)| labels.binary_search(l).unwrap_or_default())
            .collect();
        Ok(Self {
            labels,
            texts: examples.iter().map(|(t, _)| t.clone()).collect(),
            example_labels,
            vectors,
            k: 10,
            temperature: 0.05,
            threshold: 0.0,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn predict(&self, v: &[f32]) -> Prediction {
        let mut sims: Vec<(usize, f32)> =
            self.vectors.iter().map(|e| dot(e, v)).enumerate().collect();
        let k = self.k.clamp(1, sims.len());
        sims.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        sims.truncate(k);
        sims.sort_by(|a, b| b.1.total_cmp(&a.1));
        // Each neighbour adds exp(sim / T) to its class: near ones dominate.
        let top = sims[0].1;
        let mut votes = vec![0f32; self.labels.len()];
        for &(i, s) in &sims {
            votes[self.example_labels[i]] += ((s - top) / self.temperature).exp();
        }
        let total: f32 = votes.iter().sum();
        let probs = votes.into_iter().map(|v| v / total).collect();
        let evidence = sims
            .iter()
            .map(|&(i, s)| Evidence {
                text: self.texts[i].clone(),
                label: self.labels[self.example_labels[i]].clone(),
                similarity: s,
            })
            .collect();
        prediction(&self.labels, probs, self.threshold, evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn zero_shot_picks_the_closest_description_and_probabilities_sum_to_one() {
        let head = ZeroShotHead::new(
            vec!["billing".into(), "outage".into(), "access".into()],
            vec![
                unit(&[1.0, 0.0, 0.0]),
                unit(&[0.0, 1.0, 0.0]),
                unit(&[0.0, 0.0, 1.0]),
            ],
        )
        .unwrap();
        let p = head.predict(&unit(&[0.2, 0.9, 0.1]));
        assert_eq!(p.label.as_deref(), Some("outage"));
        assert_eq!(p.probabilities[0].label, "outage");
        let sum: f32 = p.probabilities.iter().map(|s| s.probability).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!(p
            .probabilities
            .windows(2)
            .all(|w| w[0].probability >= w[1].probability));
    }

    #[test]
    fn a_head_abstains_below_its_threshold() {
        let head = ZeroShotHead::new(
            vec!["a".into(), "b".into()],
            vec![unit(&[1.0, 0.0]), unit(&[0.0, 1.0])],
        )
        .unwrap()
        .with_calibration(1.0, 0.9)
        .unwrap();
        let p = head.predict(&unit(&[1.0, 0.9]));
        assert_eq!(p.label, None);
        assert_eq!(p.top, "a");
        assert!(p.confidence < 0.9);
    }

    #[test]
    fn knn_votes_by_similarity_and_returns_its_neighbours_as_evidence() {
        let ex: Vec<(String, String)> = [
            ("vpn down", "network"),
            ("wifi slow", "network"),
            ("invoice wrong", "billing"),
        ]
        .iter()
        .map(|(t, l)| (t.to_string(), l.to_string()))
        .collect();
        let vecs = vec![unit(&[1.0, 0.1]), unit(&[0.9, 0.3]), unit(&[0.0, 1.0])];
        let mut head = KnnHead::new(&ex, vecs).unwrap();
        head.k = 2;
        let p = head.predict(&unit(&[1.0, 0.0]));
        assert_eq!(p.label.as_deref(), Some("network"));
        assert_eq!(p.evidence.len(), 2);
        assert_eq!(p.evidence[0].text, "vpn down");
        assert!(p.evidence[0].similarity >= p.evidence[1].similarity);
        assert_eq!(head.labels(), ["billing", "network"]);
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert_eq!(
            ZeroShotHead::new(vec!["a".into()], vec![vec![1.0]]).unwrap_err(),
            HeadError::TooFewLabels(1)
        );
        assert_eq!(
            ZeroShotHead::new(vec!["a".into(), "b".into()], vec![vec![1.0]]).unwrap_err(),
            HeadError::Mismatch(1, 2)
        );
        assert_eq!(
            ZeroShotHead::new(
                vec!["a".into(), "b".into()],
                vec![vec![1.0], vec![1.0, 0.0]]
            )
            .unwrap_err(),
            HeadError::Dims(1, 2)
        );
        let ex = vec![
            ("x".to_string(), "same".to_string()),
            ("y".to_string(), "same".to_string()),
        ];
        assert_eq!(
            KnnHead::new(&ex, vec![vec![1.0], vec![1.0]]).unwrap_err(),
            HeadError::TooFewLabels(1)
        );
        let head =
            ZeroShotHead::new(vec!["a".into(), "b".into()], vec![vec![1.0], vec![0.0]]).unwrap();
        assert_eq!(
            head.with_calibration(0.0, 0.5).unwrap_err(),
            HeadError::Temperature(0.0)
        );
    }
}
