//! Train, evaluate and promote: the steps behind `helpdesk train`, `helpdesk
//! eval` and the `/v1/models/{task}` routes.
//!
//! 1. Take at most N examples per label (seeded) when asked.
//! 2. Hold out a stratified share (or use the given held-out set).
//! 3. Embed everything through the cache (only new texts are encoded).
//! 4. Fit the head: k-NN when a label has fewer than 5 examples, else a
//!    softmax head with the lexical mix picked on validation.
//! 5. Evaluate on the held-out examples; evaluate the active version on the
//!    same examples; promote when the candidate is not worse (macro-F1).

use std::time::Instant;

use serde::Serialize;

use crate::inference::calibration::threshold_for_precision;
use crate::inference::heads::argmax;
use crate::inference::lexical::{combine, train_mixed, HashedTfidf, MixTrial};
use crate::inference::propagation::{propagate, PropagationConfig};
use crate::inference::training::{
    train_softmax_with, validation_split, PseudoLabelled, SoftmaxHead, SplitMix, TrainConfig,
    TrainReport,
};

use super::cache::{Embedder, EmbeddingCache};
use super::dataset::{data_hash, label_targets, limit_per_class, split, Example};
use super::eval::{evaluate, EvalReport, Judged};
use super::model::{now_utc, Classifier, Gate, HeadKind, ModelCard};
use super::store::ModelStore;

/// Fewer examples than this in some label: k-NN instead of a trained head.
pub const MIN_PER_CLASS_FOR_SOFTMAX: usize = 5;

/// At most this many unlabelled texts join a training run (a seeded sample
/// beyond it): the neighbour graph costs n² dot products.
pub const MAX_UNLABELLED: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PromotePolicy {
    /// Promote when the held-out macro-F1 is not worse than the active version's.
    Gate,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub task: String,
    pub tenant: String,
    pub kind: Option<HeadKind>,
    pub limit_per_class: Option<usize>,
    pub seed: u64,
    /// Share held out for evaluation when no held-out set is given.
    pub heldout_fraction: f64,
    pub target_precision: f32,
    /// Candidate weights of the lexical features (0 = embedding only).
    pub lexical_weights: Vec<f32>,
    pub lexical_dims: usize,
    /// Exemplars per label kept as evidence with a trained head.
    pub evidence_per_class: usize,
    /// The head reads layer features (`cache::LayerFeatures`) instead of
    /// base vectors; the embedder given to `train` must be the matching one.
    pub layer_features: bool,
    pub neutral_label: Option<String>,
    /// Label → description, added to the training examples (one each):
    /// informative label texts help most when examples are few.
    pub descriptions: Option<std::collections::BTreeMap<String, String>>,
    pub promote: PromotePolicy,
    pub command: Option<String>,
    /// Settings of a softmax head (an MLP head uses `TrainConfig::mlp`).
    pub head: TrainConfig,
    /// Hidden units of an MLP head.
    pub hidden_units: usize,
    /// Texts without labels (e.g. a tenant's ticket history): labels are
    /// propagated to them over a nearest-neighbour graph and they train the
    /// head beside the labelled examples (softmax and MLP heads).
    pub unlabelled: Vec<String>,
    /// Loss weight of a propagated label, against 1 for a human one.
    pub unlabelled_weight: f32,
    pub propagation: PropagationConfig,
}

impl TrainOptions {
    pub fn new(task: &str, tenant: &str) -> Self {
        Self {
            task: task.into(),
            tenant: tenant.into(),
            kind: None,
            limit_per_class: None,
            seed: 42,
            heldout_fraction: 0.2,
            target_precision: 0.95,
            lexical_weights: vec![0.0, 0.5, 1.0],
            lexical_dims: 1 << 12,
            evidence_per_class: 8,
            layer_features: false,
            neutral_label: None,
            descriptions: None,
            promote: PromotePolicy::Gate,
            command: None,
            head: TrainConfig::default(),
            hidden_units: 256,
            unlabelled: Vec::new(),
            unlabelled_weight: 0.5,
            propagation: PropagationConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Embedding,
    Training,
    Evaluating,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub version: u32,
    pub promoted: bool,
    pub card: ModelCard,
    pub report: EvalReport,
}

/// Embeds `texts` through the cache with progress reports.
fn embed(
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    texts: &[&str],
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> anyhow::Result<Vec<Vec<f32>>> {
    cache.embed_all(embedder, texts, 256, |d, t| {
        progress(Phase::Embedding, d, t)
    })
}

/// Judges `model` on `examples` whose embeddings are `vectors`. When the gold
/// labels include the model's neutral label, an abstention counts as it.
pub fn judge(model: &Classifier, examples: &[Example], vectors: &[Vec<f32>]) -> Vec<Judged> {
    let neutral = model
        .card
        .neutral_label
        .as_ref()
        .filter(|n| examples.iter().any(|e| &e.label == *n));
    examples
        .iter()
        .zip(vectors)
        .map(|(e, v)| {
            let p = model.predict(v, &e.text);
            let (top, label) = match (neutral, &p.label) {
                (Some(n), None) => (n.clone(), Some(n.clone())),
                _ => (p.top.clone(), p.label.clone()),
            };
            Judged {
                gold: e.label.clone(),
                top,
                label,
                confidence: p.confidence,
            }
        })
        .collect()
}

/// Evaluates an already loaded version on labelled examples.
pub fn evaluate_model(
    model: &Classifier,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    examples: &[Example],
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> anyhow::Result<EvalReport> {
    anyhow::ensure!(
        model.card.encoder == embedder.id(),
        "version {} reads vectors of {}, this service runs {}",
        model.card.version,
        model.card.encoder,
        embedder.id()
    );
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let vectors = embed(embedder, cache, &texts, progress)?;
    progress(Phase::Evaluating, 0, examples.len());
    let judged = judge(model, examples, &vectors);
    progress(Phase::Evaluating, examples.len(), examples.len());
    Ok(evaluate(
        &model.card.task,
        &model.card.tenant,
        model.card.version,
        model.labels(),
        model.card.threshold,
        &judged,
    ))
}

/// The `n` examples of each label closest to the label's mean vector.
fn central_exemplars(
    examples: &[Example],
    vectors: &[Vec<f32>],
    targets: &[usize],
    classes: usize,
    n: usize,
) -> Vec<(String, usize, Vec<f32>)> {
    let dims = vectors.first().map_or(0, Vec::len);
    let mut out = Vec::new();
    for c in 0..classes {
        let members: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] == c).collect();
        let mut mean = vec![0f32; dims];
        for &i in &members {
            mean.iter_mut().zip(&vectors[i]).for_each(|(m, x)| *m += x);
        }
        let mut scored: Vec<(f32, usize)> = members
            .iter()
            .map(|&i| (vectors[i].iter().zip(&mean).map(|(a, b)| a * b).sum(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        out.extend(
            scored
                .into_iter()
                .take(n)
                .map(|(_, i)| (examples[i].text.clone(), c, vectors[i].clone())),
        );
    }
    out
}

/// The unlabelled texts worth using: trimmed, without blanks, repeats, or
/// texts of the labelled or held-out examples (a held-out text must not teach
/// the head its own answer); a seeded sample of `MAX_UNLABELLED` beyond that.
/// Also returns how many were given.
fn fresh_unlabelled(
    given: &[String],
    train_set: &[Example],
    heldout: &[Example],
    seed: u64,
) -> (Vec<String>, usize) {
    let mut seen: std::collections::HashSet<&str> = train_set
        .iter()
        .chain(heldout)
        .map(|e| e.text.trim())
        .collect();
    let mut out: Vec<String> = given
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && seen.insert(t))
        .map(str::to_string)
        .collect();
    if out.len() > MAX_UNLABELLED {
        SplitMix::new(seed).shuffle(&mut out);
        out.truncate(MAX_UNLABELLED);
    }
    (out, given.len())
}

/// A trained softmax (or MLP) head with the lexical mix it won with.
struct Fitted {
    head: SoftmaxHead,
    tfidf: Option<HashedTfidf>,
    weight: f32,
    report: TrainReport,
    trials: Option<Vec<MixTrial>>,
}

impl Fitted {
    /// Trains on `vectors` (and `texts` when a weight in `weights` is above
    /// 0: the lexical mix is then picked on validation), with pseudo-labelled
    /// examples beside them when given.
    #[allow(clippy::too_many_arguments)]
    fn train(
        vectors: &[Vec<f32>],
        texts: &[&str],
        targets: &[usize],
        labels: &[String],
        cfg: &TrainConfig,
        weights: &[f32],
        opts: &TrainOptions,
        pseudo: Option<PseudoLabelled<'_>>,
    ) -> anyhow::Result<Self> {
        if weights.iter().any(|&w| w > 0.0) {
            let (mixed, report, trials) = train_mixed(
                vectors,
                texts,
                targets,
                labels.to_vec(),
                cfg,
                weights,
                opts.lexical_dims,
                pseudo,
            )?;
            Ok(Self {
                head: mixed.head,
                tfidf: Some(mixed.tfidf),
                weight: mixed.weight,
                report,
                trials: Some(trials),
            })
        } else {
            let (head, report) =
                train_softmax_with(vectors, targets, labels.to_vec(), cfg, pseudo)?;
            Ok(Self {
                head,
                tfidf: None,
                weight: 0.0,
                report,
                trials: None,
            })
        }
    }

    /// Calibrated probabilities of every label for one text.
    fn probabilities(&self, vector: &[f32], text: &str) -> Vec<f32> {
        match (&self.tfidf, self.weight > 0.0) {
            (Some(t), true) => {
                self.head
                    .probabilities(&combine(vector, &t.transform(text), self.weight))
            }
            _ => self.head.probabilities(vector),
        }
    }
}

/// Learning from unlabelled texts: the first head's probabilities are the
/// texts' prior, labels spread to them over the neighbour graph of labelled
/// and unlabelled vectors, and `retrain` fits the head again with them as
/// pseudo-labelled examples (validation stays on human labels). Returns the
/// new head and what happened, for the model card (`first_head` holds the
/// first head's validation figures, to compare with the new one's).
#[allow(clippy::too_many_arguments)]
fn with_unlabelled(
    first: &Fitted,
    train_vecs: &[Vec<f32>],
    targets: &[usize],
    classes: usize,
    vectors: &[Vec<f32>],
    texts: &[&str],
    cfg: &TrainConfig,
    opts: &TrainOptions,
    retrain: impl FnOnce(PseudoLabelled<'_>) -> anyhow::Result<Fitted>,
) -> anyhow::Result<(Fitted, serde_json::Value)> {
    let started = Instant::now();
    // The prior is the first head as trained, refitted on the validation
    // examples too: with a few labels per class it is the better judge (on
    // Banking77 at 10 per intent, +1.2 to +2.6 points after propagation over
    // a prior from the head before its refit). Its price: the validation
    // figures of the new head are optimistic (see BENCHMARKS.md).
    let prior: Vec<Vec<f32>> = vectors
        .iter()
        .zip(texts)
        .map(|(v, t)| first.probabilities(v, t))
        .collect();
    // Labels spread from the training side of the validation split only:
    // a validation example's label should not reach its neighbours through
    // the graph (the validation loss stops training, calibrates and decides
    // whether the new head is kept).
    let (seeds, _) = validation_split(targets, classes, cfg.val_fraction, cfg.seed);
    let seed_vecs: Vec<Vec<f32>> = seeds.iter().map(|&i| train_vecs[i].clone()).collect();
    let seed_targets: Vec<usize> = seeds.iter().map(|&i| targets[i]).collect();
    let spread = propagate(
        &seed_vecs,
        &seed_targets,
        classes,
        vectors,
        Some(&prior),
        &opts.propagation,
    )?;
    let (mut kept_vecs, mut kept_texts, mut kept_targets) = (Vec::new(), Vec::new(), Vec::new());
    let (mut agree, mut confidence) = (0usize, 0f32);
    for (i, t) in spread.targets.iter().enumerate() {
        if let Some(t) = *t {
            kept_vecs.push(vectors[i].clone());
            kept_texts.push(texts[i]);
            kept_targets.push(t);
            agree += usize::from(argmax(&prior[i]) == t);
            confidence += spread.confidence[i];
        }
    }
    let propagate_seconds = started.elapsed().as_secs_f32();
    let used = kept_targets.len();
    let second = retrain(PseudoLabelled {
        vectors: &kept_vecs,
        texts: &kept_texts,
        targets: &kept_targets,
        weight: opts.unlabelled_weight,
    })?;
    let share = |x: f32| if used > 0 { x / used as f32 } else { 0.0 };
    let report = serde_json::json!({
        "used": used,
        "weight": opts.unlabelled_weight,
        "propagation": opts.propagation,
        "mean_confidence": share(confidence),
        "agreement_with_first_head": share(agree as f32),
        "first_head": {
            "val_loss": first.report.val_loss,
            "val_accuracy": first.report.val_accuracy,
        },
        "propagate_seconds": propagate_seconds,
    });
    Ok((second, report))
}

/// Trains a new version of `opts.task` for `opts.tenant`, evaluates it,
/// stores it and promotes it per `opts.promote`.
pub fn train(
    store: &ModelStore,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    examples: Vec<Example>,
    heldout: Option<Vec<Example>>,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> anyhow::Result<TrainOutcome> {
    super::store::check_name("tenant", &opts.tenant)?;
    super::store::check_name("task", &opts.task)?;
    anyhow::ensure!(
        embedder.id().ends_with(super::cache::LAYERS_SUFFIX) == opts.layer_features,
        "embedder {} does not match layer_features = {}",
        embedder.id(),
        opts.layer_features
    );
    let examples = match opts.limit_per_class {
        Some(n) => limit_per_class(&examples, n, opts.seed),
        None => examples,
    };
    let (mut train_set, heldout) = match heldout {
        Some(h) => (examples, h),
        None => split(&examples, opts.heldout_fraction, opts.seed),
    };
    if let Some(d) = &opts.descriptions {
        // Only for labels that have examples: a description alone would make
        // a one-example label (and turn the head into k-NN).
        let known: std::collections::BTreeSet<String> =
            train_set.iter().map(|e| e.label.clone()).collect();
        let extra: Vec<Example> = d
            .iter()
            .filter(|(l, t)| known.contains(*l) && !t.trim().is_empty())
            .map(|(l, t)| Example {
                text: t.clone(),
                label: l.clone(),
            })
            .collect();
        train_set.extend(extra);
    }
    let (labels, targets) = label_targets(&train_set);
    anyhow::ensure!(
        labels.len() >= 2,
        "training needs at least two labels, the data has {}",
        labels.len()
    );
    anyhow::ensure!(!heldout.is_empty(), "no held-out examples to evaluate on");
    let min_count = (0..labels.len())
        .map(|c| targets.iter().filter(|&&t| t == c).count())
        .min()
        .unwrap_or(0);
    let kind = opts
        .kind
        .unwrap_or(if min_count < MIN_PER_CLASS_FOR_SOFTMAX {
            HeadKind::Knn
        } else {
            HeadKind::Softmax
        });
    // Only a trained head learns from unlabelled texts.
    let learns = matches!(kind, HeadKind::Softmax | HeadKind::Mlp);
    let (unlabelled, unlabelled_given) = match learns {
        true => fresh_unlabelled(&opts.unlabelled, &train_set, &heldout, opts.seed),
        false => (Vec::new(), opts.unlabelled.len()),
    };
    let started = Instant::now();
    let mut texts: Vec<&str> = train_set.iter().map(|e| e.text.as_str()).collect();
    texts.extend(heldout.iter().map(|e| e.text.as_str()));
    texts.extend(unlabelled.iter().map(String::as_str));
    let all = embed(embedder, cache, &texts, progress)?;
    let (train_vecs, rest) = all.split_at(train_set.len());
    let (heldout_vecs, unlabelled_vecs) = rest.split_at(heldout.len());
    let embed_seconds = started.elapsed().as_secs_f32();

    progress(Phase::Training, 0, 1);
    let started = Instant::now();
    let mut card = ModelCard {
        task: opts.task.clone(),
        tenant: opts.tenant.clone(),
        version: 0,
        kind,
        labels: labels.clone(),
        encoder: embedder.id(),
        dims: embedder.dims(),
        created_at: now_utc(),
        data_hash: data_hash(&train_set),
        train_examples: train_set.len(),
        heldout_examples: heldout.len(),
        lexical_weight: 0.0,
        lexical_dims: 0,
        temperature: 1.0,
        threshold: 0.0,
        target_precision: opts.target_precision,
        neutral_label: opts.neutral_label.clone(),
        metrics: None,
        gate: None,
        training: serde_json::Value::Null,
        command: opts.command.clone(),
    };
    let cfg = TrainConfig {
        target_precision: opts.target_precision,
        seed: opts.seed,
        ..if kind == HeadKind::Mlp {
            // Batches grow with the data: some 400 steps an epoch, so a few
            // hundred examples still get enough steps and 60k take minutes.
            TrainConfig {
                batch_size: (train_set.len() / 400).clamp(16, 128),
                ..TrainConfig::mlp(opts.hidden_units)
            }
        } else {
            opts.head.clone()
        }
    };
    let mut model = match kind {
        HeadKind::Softmax | HeadKind::Mlp => {
            let exemplars = central_exemplars(
                &train_set,
                train_vecs,
                &targets,
                labels.len(),
                opts.evidence_per_class,
            );
            let train_texts: Vec<&str> = train_set.iter().map(|e| e.text.as_str()).collect();
            let fit = |weights: &[f32], pseudo: Option<PseudoLabelled<'_>>| {
                Fitted::train(
                    train_vecs,
                    &train_texts,
                    &targets,
                    &labels,
                    &cfg,
                    weights,
                    opts,
                    pseudo,
                )
            };
            let mut fitted = fit(&opts.lexical_weights, None)?;
            let mut semi = serde_json::Value::Null;
            if !unlabelled.is_empty() {
                let texts: Vec<&str> = unlabelled.iter().map(String::as_str).collect();
                let (second, report) = with_unlabelled(
                    &fitted,
                    train_vecs,
                    &targets,
                    labels.len(),
                    unlabelled_vecs,
                    &texts,
                    &cfg,
                    opts,
                    |pseudo| fit(&[fitted.weight], Some(pseudo)),
                )?;
                semi = report;
                semi["given"] = unlabelled_given.into();
                // Kept only when validation (human labels) does not say the
                // propagated labels made it worse.
                let kept = second.report.val_loss <= fitted.report.val_loss
                    || fitted.report.val_examples == 0;
                semi["kept"] = kept.into();
                if kept {
                    fitted = Fitted {
                        // The lexical trials were the first pass's.
                        trials: second.trials.or(fitted.trials.take()),
                        ..second
                    };
                }
            }
            card.lexical_weight = fitted.weight;
            card.lexical_dims = fitted.tfidf.as_ref().map_or(0, HashedTfidf::dims);
            card.temperature = fitted.head.temperature;
            card.threshold = fitted.head.threshold;
            card.training = serde_json::json!({ "head": fitted.report });
            if let Some(trials) = &fitted.trials {
                card.training["lexical_trials"] = serde_json::json!(trials);
            }
            if !semi.is_null() {
                card.training["unlabelled"] = semi;
            }
            let tfidf = fitted.tfidf.filter(|_| fitted.weight > 0.0);
            Classifier::softmax(card, fitted.head, tfidf, exemplars)
        }
        HeadKind::Knn => {
            let exemplars: Vec<(String, usize, Vec<f32>)> = train_set
                .iter()
                .zip(train_vecs)
                .zip(&targets)
                .map(|((e, v), &t)| (e.text.clone(), t, v.clone()))
                .collect();
            card.temperature = 0.05;
            // The threshold from a validation split of the training examples.
            let (fit, val) = split(&train_set, 0.2, opts.seed);
            let pick = |part: &[Example]| -> Vec<(String, usize, Vec<f32>)> {
                part.iter()
                    .filter_map(|e| exemplars.iter().find(|x| x.0 == e.text))
                    .cloned()
                    .collect()
            };
            let probe = Classifier::knn(card.clone(), pick(&fit));
            if let (Ok(probe), false) = (probe, val.is_empty()) {
                let val_vecs: Vec<Vec<f32>> = pick(&val).into_iter().map(|x| x.2).collect();
                let judged: Vec<(f32, bool)> = judge(&probe, &val, &val_vecs)
                    .iter()
                    .map(|j| (j.confidence, j.top == j.gold))
                    .collect();
                let t = threshold_for_precision(&judged, opts.target_precision);
                card.threshold = t.threshold;
                card.training = serde_json::json!({ "threshold": t, "val_examples": val.len() });
            }
            Classifier::knn(card, exemplars)?
        }
        HeadKind::ZeroShot => anyhow::bail!(
            "zero-shot heads come from label descriptions, not labelled examples: give descriptions"
        ),
    };
    let train_seconds = started.elapsed().as_secs_f32();
    if let serde_json::Value::Object(m) = &mut model.card.training {
        m.insert("embed_seconds".into(), embed_seconds.into());
        m.insert("head_seconds".into(), train_seconds.into());
        if unlabelled_given > 0 && !m.contains_key("unlabelled") {
            let reason = if learns {
                "every unlabelled text repeats a labelled or held-out example".to_string()
            } else {
                format!(
                    "a k-NN head does not learn from unlabelled texts; a softmax or MLP head \
                     does (the default with {MIN_PER_CLASS_FOR_SOFTMAX} or more examples per label)"
                )
            };
            m.insert(
                "unlabelled".into(),
                serde_json::json!({ "given": unlabelled_given, "used": 0, "reason": reason }),
            );
        }
    }

    progress(Phase::Evaluating, 0, heldout.len());
    let report = evaluate(
        &opts.task,
        &opts.tenant,
        0,
        &labels,
        model.card.threshold,
        &judge(&model, &heldout, heldout_vecs),
    );
    model.card.metrics = Some(report.summary.clone());
    let gate = gate(
        store,
        embedder,
        &model,
        &heldout,
        heldout_vecs,
        report.summary.macro_f1,
        opts,
    );
    let outcome = save_and_promote(store, model, gate, report, opts)?;
    progress(Phase::Evaluating, heldout.len(), heldout.len());
    Ok(outcome)
}

/// Stores `model` as the next version with its gate, and promotes it when
/// the gate says so.
fn save_and_promote(
    store: &ModelStore,
    mut model: Classifier,
    gate: Gate,
    mut report: EvalReport,
    opts: &TrainOptions,
) -> anyhow::Result<TrainOutcome> {
    let promoted = gate.promoted;
    model.card.gate = Some(gate);
    let version = store.save_new(&mut model)?;
    if promoted {
        store.promote(&opts.tenant, &opts.task, version)?;
    }
    report.version = version;
    Ok(TrainOutcome {
        version,
        promoted,
        card: model.card,
        report,
    })
}

/// Scores the active version on the candidate's held-out examples: on the
/// same vectors, or on the other kind the same model gives (base vectors vs
/// layer features) when the active version reads those.
fn gate(
    store: &ModelStore,
    embedder: &dyn Embedder,
    candidate: &Classifier,
    heldout: &[Example],
    vectors: &[Vec<f32>],
    score: f32,
    opts: &TrainOptions,
) -> Gate {
    let active_version = store.active(&opts.tenant, &opts.task).ok().flatten();
    let active = active_version
        .and_then(|v| store.load(&opts.tenant, &opts.task, v).ok())
        .and_then(|a| {
            let own;
            let vecs = if a.card.encoder == candidate.card.encoder {
                vectors
            } else {
                let other = embedder.sibling(&a.card.encoder)?;
                let texts: Vec<&str> = heldout.iter().map(|e| e.text.as_str()).collect();
                let mut v = Vec::with_capacity(texts.len());
                for chunk in texts.chunks(256) {
                    v.extend(other.embed(chunk).ok()?);
                }
                own = v;
                &own
            };
            Some(
                evaluate(
                    &opts.task,
                    &opts.tenant,
                    a.card.version,
                    a.labels(),
                    a.card.threshold,
                    &judge(&a, heldout, vecs),
                )
                .summary
                .macro_f1,
            )
        });
    let (promoted, reason) = match (opts.promote, active) {
        (PromotePolicy::Always, _) => (true, "promotion forced".to_string()),
        (PromotePolicy::Never, _) => (false, "promotion not asked for".to_string()),
        (PromotePolicy::Gate, None) => (true, "no active version to compare with".to_string()),
        (PromotePolicy::Gate, Some(a)) if score + 1e-6 >= a => (
            true,
            format!("held-out macro-F1 {score:.4} is not worse than the active version's {a:.4}"),
        ),
        (PromotePolicy::Gate, Some(a)) => (
            false,
            format!("held-out macro-F1 {score:.4} is worse than the active version's {a:.4}: kept the active one"),
        ),
    };
    Gate {
        metric: "macro_f1".into(),
        candidate: Some(score),
        active,
        active_version,
        promoted,
        reason,
    }
}

/// A zero-shot version from label descriptions (label → text), for a tenant
/// with no labelled tickets yet. Evaluated on `heldout` when there is any;
/// without it, promoted only when the task has no active version (or when
/// promotion is forced).
pub fn zero_shot(
    store: &ModelStore,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    descriptions: &std::collections::BTreeMap<String, String>,
    heldout: &[Example],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> anyhow::Result<TrainOutcome> {
    super::store::check_name("tenant", &opts.tenant)?;
    super::store::check_name("task", &opts.task)?;
    anyhow::ensure!(
        descriptions.len() >= 2,
        "a zero-shot head needs descriptions of at least two labels, got {}",
        descriptions.len()
    );
    if let Some((l, _)) = descriptions
        .iter()
        .find(|(l, d)| l.trim().is_empty() || d.trim().is_empty())
    {
        anyhow::bail!("label {l:?} has an empty name or description");
    }
    let labels: Vec<String> = descriptions.keys().cloned().collect();
    let mut texts: Vec<&str> = descriptions.values().map(String::as_str).collect();
    texts.extend(heldout.iter().map(|e| e.text.as_str()));
    let all = embed(embedder, cache, &texts, progress)?;
    let (label_vecs, heldout_vecs) = all.split_at(labels.len());
    let exemplars = descriptions
        .values()
        .zip(label_vecs)
        .enumerate()
        .map(|(i, (d, v))| (d.clone(), i, v.clone()))
        .collect();
    let card = ModelCard {
        task: opts.task.clone(),
        tenant: opts.tenant.clone(),
        version: 0,
        kind: HeadKind::ZeroShot,
        labels: labels.clone(),
        encoder: embedder.id(),
        dims: embedder.dims(),
        created_at: now_utc(),
        data_hash: data_hash(
            &descriptions
                .iter()
                .map(|(l, d)| Example {
                    text: d.clone(),
                    label: l.clone(),
                })
                .collect::<Vec<_>>(),
        ),
        train_examples: 0,
        heldout_examples: heldout.len(),
        lexical_weight: 0.0,
        lexical_dims: 0,
        temperature: 0.05,
        threshold: 0.0,
        target_precision: opts.target_precision,
        neutral_label: opts.neutral_label.clone(),
        metrics: None,
        gate: None,
        training: serde_json::json!({ "descriptions": descriptions }),
        command: opts.command.clone(),
    };
    let mut model = Classifier::zero_shot(card, exemplars)?;
    let report = evaluate(
        &opts.task,
        &opts.tenant,
        0,
        &labels,
        0.0,
        &judge(&model, heldout, heldout_vecs),
    );
    let gate = if heldout.is_empty() {
        let active = store.active(&opts.tenant, &opts.task).ok().flatten();
        let promoted = match opts.promote {
            PromotePolicy::Always => true,
            PromotePolicy::Never => false,
            PromotePolicy::Gate => active.is_none(),
        };
        Gate {
            metric: "macro_f1".into(),
            candidate: None,
            active: None,
            active_version: active,
            promoted,
            reason: if promoted {
                "no held-out examples; promoted as the task's first version".into()
            } else {
                "no held-out examples to compare with the active version: kept the active one"
                    .into()
            },
        }
    } else {
        model.card.metrics = Some(report.summary.clone());
        gate(
            store,
            embedder,
            &model,
            heldout,
            heldout_vecs,
            report.summary.macro_f1,
            opts,
        )
    };
    save_and_promote(store, model, gate, report, opts)
}
