//! A trained label set as files: `head.safetensors` (the numbers), `card.json`
//! (labels, head kind, calibration, metrics, data hash, encoder, date) and
//! `examples.json` (the texts of the evidence exemplars).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::inference::heads::{Evidence, KnnHead, Prediction, ZeroShotHead};
use crate::inference::lexical::{combine, HashedTfidf};
use crate::inference::training::{Hidden, SoftmaxHead};

use super::eval::EvalSummary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum HeadKind {
    /// Cosine to embedded label descriptions: no labelled examples needed.
    ZeroShot,
    /// The nearest labelled examples vote: a few examples per label.
    Knn,
    /// Logistic regression on the embedding (and lexical features).
    Softmax,
    /// One ReLU hidden layer, then softmax, on the same features: for label
    /// sets with many examples whose classes a linear head cannot separate.
    Mlp,
}

/// How a new version compared with the active one when it was trained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gate {
    pub metric: String,
    /// `None` when there were no held-out examples to score it on.
    pub candidate: Option<f32>,
    /// The active version's score on the same held-out examples, if any.
    pub active: Option<f32>,
    pub active_version: Option<u32>,
    pub promoted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub task: String,
    pub tenant: String,
    /// 0 for a model shipped with the service.
    pub version: u32,
    pub kind: HeadKind,
    pub labels: Vec<String>,
    /// `name@sha` of the encoder whose vectors the head reads.
    pub encoder: String,
    pub dims: usize,
    pub created_at: String,
    /// sha256 of the training examples (text and label, in order).
    pub data_hash: String,
    pub train_examples: usize,
    pub heldout_examples: usize,
    /// Weight of the hashed TF-IDF features beside the embedding (0 = none).
    #[serde(default)]
    pub lexical_weight: f32,
    #[serde(default)]
    pub lexical_dims: usize,
    pub temperature: f32,
    /// Below this calibrated confidence the head abstains.
    pub threshold: f32,
    pub target_precision: f32,
    /// For two-label sentiment: texts whose confidence is below `threshold`
    /// are `neutral` rather than abstained.
    #[serde(default)]
    pub neutral_label: Option<String>,
    /// Held-out evaluation of this version.
    pub metrics: Option<EvalSummary>,
    pub gate: Option<Gate>,
    /// How training went (epochs, validation loss, mixes tried, seconds).
    #[serde(default)]
    pub training: serde_json::Value,
    /// The command that reproduces this version, when it came from the CLI.
    #[serde(default)]
    pub command: Option<String>,
}

impl ModelCard {
    /// The head reads image embeddings (EfficientNet-Lite0's), not text.
    pub fn reads_images(&self) -> bool {
        self.encoder
            .split('@')
            .next()
            .is_some_and(|name| name == crate::vision::IMAGE_ENCODER)
    }

    /// The head reads the text encoder's layer features
    /// (`inference::encoder::layer_features`), not its base vector.
    pub fn reads_layers(&self) -> bool {
        self.encoder.ends_with(super::cache::LAYERS_SUFFIX)
    }
}

#[derive(Debug, Clone)]
enum Head {
    Softmax {
        head: SoftmaxHead,
        tfidf: Option<HashedTfidf>,
    },
    Knn(KnnHead),
    ZeroShot(ZeroShotHead),
}

/// A loaded version: card plus head, ready to predict.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub card: ModelCard,
    head: Head,
    /// Labelled exemplars shown as evidence: (text, label index, vector).
    exemplars: Vec<(String, usize, Vec<f32>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model files in {0}: {1}")]
    Files(String, String),
    #[error(transparent)]
    Head(#[from] crate::inference::heads::HeadError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

#[derive(Serialize, Deserialize)]
struct ExemplarFile {
    texts: Vec<String>,
    labels: Vec<usize>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Classifier {
    pub fn softmax(
        card: ModelCard,
        head: SoftmaxHead,
        tfidf: Option<HashedTfidf>,
        exemplars: Vec<(String, usize, Vec<f32>)>,
    ) -> Self {
        Self {
            card,
            head: Head::Softmax { head, tfidf },
            exemplars,
        }
    }

    /// A k-NN head over `exemplars` (every labelled example).
    pub fn knn(
        card: ModelCard,
        exemplars: Vec<(String, usize, Vec<f32>)>,
    ) -> Result<Self, ModelError> {
        let pairs: Vec<(String, String)> = exemplars
            .iter()
            .map(|(t, l, _)| (t.clone(), card.labels[*l].clone()))
            .collect();
        let mut head = KnnHead::new(&pairs, exemplars.iter().map(|e| e.2.clone()).collect())?;
        head.temperature = card.temperature;
        head.threshold = card.threshold;
        Ok(Self {
            card,
            head: Head::Knn(head),
            exemplars,
        })
    }

    /// A zero-shot head; `exemplars` are the label descriptions.
    pub fn zero_shot(
        card: ModelCard,
        exemplars: Vec<(String, usize, Vec<f32>)>,
    ) -> Result<Self, ModelError> {
        let head = ZeroShotHead::new(
            card.labels.clone(),
            exemplars.iter().map(|e| e.2.clone()).collect(),
        )?
        .with_calibration(card.temperature, card.threshold)?;
        Ok(Self {
            card,
            head: Head::ZeroShot(head),
            exemplars,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.card.labels
    }

    /// Predicts from the text's embedding (and its text, for lexical features).
    pub fn predict(&self, embedding: &[f32], text: &str) -> Prediction {
        let mut p = match &self.head {
            Head::Softmax { head, tfidf } => match tfidf {
                Some(t) if self.card.lexical_weight > 0.0 => head.predict(&combine(
                    embedding,
                    &t.transform(text),
                    self.card.lexical_weight,
                )),
                _ => head.predict(embedding),
            },
            Head::Knn(h) => return h.predict(embedding),
            Head::ZeroShot(h) => h.predict(embedding),
        };
        p.evidence = self.evidence(embedding, 3);
        p
    }

    /// The `k` exemplars nearest to `embedding`.
    fn evidence(&self, embedding: &[f32], k: usize) -> Vec<Evidence> {
        let mut sims: Vec<(f32, usize)> = self
            .exemplars
            .iter()
            .enumerate()
            .map(|(i, e)| (dot(&e.2, embedding), i))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        sims.into_iter()
            .take(k)
            .map(|(s, i)| Evidence {
                text: self.exemplars[i].0.clone(),
                label: self.card.labels[self.exemplars[i].1].clone(),
                similarity: s,
            })
            .collect()
    }

    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let err =
            |e: &dyn std::fmt::Display| ModelError::Files(dir.display().to_string(), e.to_string());
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let dev = Device::Cpu;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let classes = self.card.labels.len();
        if let Head::Softmax { head, tfidf } = &self.head {
            let (w, b) = head.parameters();
            tensors.insert(
                "w".into(),
                Tensor::from_slice(w, (w.len() / classes, classes), &dev)?,
            );
            tensors.insert("b".into(), Tensor::from_slice(b, classes, &dev)?);
            if let Some(h) = head.hidden() {
                let units = h.b.len();
                tensors.insert(
                    "w1".into(),
                    Tensor::from_slice(&h.w, (h.w.len() / units, units), &dev)?,
                );
                tensors.insert("b1".into(), Tensor::from_slice(&h.b, units, &dev)?);
            }
            if let Some(t) = tfidf {
                tensors.insert(
                    "idf".into(),
                    Tensor::from_slice(t.idf(), t.idf().len(), &dev)?,
                );
            }
        }
        if !self.exemplars.is_empty() {
            let flat: Vec<f32> = self
                .exemplars
                .iter()
                .flat_map(|e| e.2.iter().copied())
                .collect();
            tensors.insert(
                "exemplars".into(),
                Tensor::from_vec(flat, (self.exemplars.len(), self.card.dims), &dev)?,
            );
        }
        candle_core::safetensors::save(&tensors, dir.join("head.safetensors"))?;
        let ex = ExemplarFile {
            texts: self.exemplars.iter().map(|e| e.0.clone()).collect(),
            labels: self.exemplars.iter().map(|e| e.1).collect(),
        };
        let write = |name: &str, v: String| std::fs::write(dir.join(name), v).map_err(|e| err(&e));
        write(
            "examples.json",
            serde_json::to_string(&ex).map_err(|e| err(&e))?,
        )?;
        write(
            "card.json",
            serde_json::to_string_pretty(&self.card).map_err(|e| err(&e))? + "\n",
        )?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let err =
            |e: &dyn std::fmt::Display| ModelError::Files(dir.display().to_string(), e.to_string());
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| err(&format!("{name}: {e}")))
        };
        let card: ModelCard = serde_json::from_str(&read("card.json")?).map_err(|e| err(&e))?;
        let ex: ExemplarFile =
            serde_json::from_str(&read("examples.json")?).map_err(|e| err(&e))?;
        let tensors = candle_core::safetensors::load(dir.join("head.safetensors"), &Device::Cpu)?;
        let get = |name: &str| -> Result<Vec<f32>, ModelError> {
            let t = tensors
                .get(name)
                .ok_or_else(|| err(&format!("head.safetensors has no `{name}`")))?;
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let classes = card.labels.len();
        if ex.labels.iter().any(|&l| l >= classes) || ex.texts.len() != ex.labels.len() {
            return Err(err(&"examples.json does not match the card's labels"));
        }
        let exemplars = if ex.texts.is_empty() {
            Vec::new()
        } else {
            let flat = get("exemplars")?;
            if flat.len() != ex.texts.len() * card.dims {
                return Err(err(&"exemplar vectors do not match examples.json"));
            }
            ex.texts
                .into_iter()
                .zip(ex.labels)
                .zip(flat.chunks(card.dims))
                .map(|((t, l), v)| (t, l, v.to_vec()))
                .collect()
        };
        match card.kind {
            HeadKind::Softmax | HeadKind::Mlp => {
                let mut head = SoftmaxHead::from_parameters(
                    card.labels.clone(),
                    get("w")?,
                    get("b")?,
                    card.temperature,
                    card.threshold,
                )?;
                if card.kind == HeadKind::Mlp {
                    head = head.with_hidden(Hidden {
                        w: get("w1")?,
                        b: get("b1")?,
                    })?;
                }
                let expected = card.dims
                    + if card.lexical_weight > 0.0 {
                        card.lexical_dims
                    } else {
                        0
                    };
                if head.dims() != expected {
                    return Err(err(&format!(
                        "head reads {} features, card says {expected}",
                        head.dims()
                    )));
                }
                let tfidf = if card.lexical_weight > 0.0 {
                    Some(HashedTfidf::from_idf(get("idf")?))
                } else {
                    None
                };
                Ok(Self::softmax(card, head, tfidf, exemplars))
            }
            HeadKind::Knn => Self::knn(card, exemplars),
            HeadKind::ZeroShot => Self::zero_shot(card, exemplars),
        }
    }
}

/// A sentiment answer: the two-label head's output with a neutral band.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentiment {
    /// `negative`, `neutral` or `positive`.
    pub label: String,
    pub confidence: f32,
    pub scores: Vec<crate::inference::heads::Scored>,
}

impl Classifier {
    /// The three-way reading of a prediction: the head's own label when its
    /// calibrated confidence clears the threshold, else the neutral label.
    pub fn three_way(&self, p: &Prediction) -> Sentiment {
        let label = match (&p.label, &self.card.neutral_label) {
            (Some(l), _) => l.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => p.top.clone(),
        };
        Sentiment {
            label,
            confidence: p.confidence,
            scores: p.probabilities.clone(),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC, proleptic Gregorian).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_timestamp(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_600_000), "2026-11-25T09:46:40Z");
    }
}

/// A card for tests of code that stores or loads heads: task `team`,
/// tenant `t`, labels `erp` and `net`, a fake encoder.
#[cfg(test)]
pub(crate) fn test_card(kind: HeadKind, dims: usize) -> ModelCard {
    ModelCard {
        task: "team".into(),
        tenant: "t".into(),
        version: 1,
        kind,
        labels: vec!["erp".into(), "net".into()],
        encoder: "fake@0".into(),
        dims,
        created_at: now_utc(),
        data_hash: String::new(),
        train_examples: 8,
        heldout_examples: 0,
        lexical_weight: 0.0,
        lexical_dims: 0,
        temperature: 1.0,
        threshold: 0.0,
        target_precision: 0.95,
        neutral_label: None,
        metrics: None,
        gate: None,
        training: serde_json::Value::Null,
        command: None,
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;
    use crate::inference::lexical::train_mixed;
    use crate::inference::training::TrainConfig;

    /// Saved and loaded heads predict exactly what they did before, with and
    /// without lexical features and with a hidden layer (a stand-in 2-d
    /// "embedding" is enough here).
    #[test]
    fn saved_heads_load_and_predict_the_same() {
        let texts = [
            "ME21N error",
            "VA01 blocked",
            "MIGO fails",
            "F110 stuck",
            "vpn down",
            "wifi slow",
            "dns broken",
            "vpn drops",
        ];
        let emb: Vec<Vec<f32>> = (0..8)
            .map(|i| {
                if i < 4 {
                    vec![1.0, 0.1 * i as f32]
                } else {
                    vec![0.1 * i as f32, 1.0]
                }
            })
            .collect();
        let targets: Vec<usize> = (0..8).map(|i| usize::from(i >= 4)).collect();
        for (weight, units) in [(0.0f32, 0), (1.0, 0), (1.0, 8)] {
            let cfg = TrainConfig {
                max_epochs: 30,
                lr: 0.1,
                hidden_units: units,
                ..Default::default()
            };
            let (mixed, _, _) = train_mixed(
                &emb,
                &texts,
                &targets,
                vec!["erp".into(), "net".into()],
                &cfg,
                &[weight],
                512,
                None,
            )
            .unwrap();
            let kind = if units > 0 {
                HeadKind::Mlp
            } else {
                HeadKind::Softmax
            };
            assert_eq!(mixed.head.hidden().is_some(), units > 0);
            let mut c = test_card(kind, 2);
            c.lexical_weight = mixed.weight;
            c.lexical_dims = mixed.tfidf.dims();
            c.temperature = mixed.head.temperature;
            let exemplars = vec![
                ("ME21N error".to_string(), 0, emb[0].clone()),
                ("vpn down".to_string(), 1, emb[4].clone()),
            ];
            let tfidf = (mixed.weight > 0.0).then(|| mixed.tfidf.clone());
            let model = Classifier::softmax(c, mixed.head.clone(), tfidf, exemplars);
            let dir = tempfile_dir(&format!("w{weight}-h{units}"));
            model.save(&dir).unwrap();
            let back = Classifier::load(&dir).unwrap();
            for (t, e) in texts.iter().zip(&emb) {
                let (a, b) = (model.predict(e, t), back.predict(e, t));
                assert_eq!(a.top, b.top);
                assert!((a.confidence - b.confidence).abs() < 1e-6);
                assert_eq!(a.evidence, b.evidence);
            }
            assert_eq!(back.predict(&emb[5], texts[5]).evidence[0].text, "vpn down");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile_dir("corrupt");
        let model = Classifier::knn(
            test_card(HeadKind::Knn, 2),
            vec![
                ("a".into(), 0, vec![1.0, 0.0]),
                ("b".into(), 1, vec![0.0, 1.0]),
            ],
        )
        .unwrap();
        model.save(&dir).unwrap();
        assert_eq!(
            Classifier::load(&dir).unwrap().predict(&[0.9, 0.1], "").top,
            "erp"
        );
        std::fs::write(dir.join("examples.json"), r#"{"texts":["a"],"labels":[5]}"#).unwrap();
        assert!(Classifier::load(&dir).is_err());
        std::fs::write(dir.join("card.json"), "{").unwrap();
        assert!(Classifier::load(&dir).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("helpdesk-model-{}-{name}", std::process::id()))
    }
}
