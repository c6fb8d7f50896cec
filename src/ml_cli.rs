//! `helpdesk train`, `helpdesk eval` and `helpdesk heads …`: the ML
//! pipeline from the command line. JSON on stdout, progress on stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;
use crate::inference;
use crate::ml::cache::LayerFeatures;
use crate::ml::dataset::{self, parse_label_map};
use crate::ml::pipeline::{self, Phase, PromotePolicy, TrainOptions};
use crate::ml::{cache_dir, Embedder, EmbeddingCache, HeadKind, ModelStore};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The label set, e.g. `category`, `team`, `priority`, `sentiment`.
    #[arg(long)]
    pub task: String,
    /// Labelled examples: CSV/TSV with a header (`text,label`) or JSON lines.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["descriptions", "images"])]
    pub data: Option<PathBuf>,
    /// Labelled images instead: one folder per label under DIR. The head
    /// reads the images' EfficientNet-Lite0 embeddings (an image head, run
    /// by the attachment checks' `kind.heads`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "descriptions"])]
    pub images: Option<PathBuf>,
    /// Label descriptions, a JSON object of label → description: alone, a
    /// zero-shot head; with `--data`, one more training example per label.
    #[arg(long, value_name = "FILE")]
    pub descriptions: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Evaluate on this file instead of holding out part of `--data`.
    #[arg(long, value_name = "FILE")]
    pub heldout: Option<PathBuf>,
    /// Share of `--data` held out for evaluation when there is no `--heldout`.
    #[arg(long, default_value_t = 0.2)]
    pub heldout_fraction: f64,
    /// Use at most N examples of each label (seeded).
    #[arg(long, value_name = "N")]
    pub limit_per_class: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Head kind (default: k-NN when a label has fewer than 5 examples, else
    /// softmax; `mlp` for many examples of classes a linear head cannot split).
    #[arg(long, value_enum)]
    pub kind: Option<HeadKind>,
    /// Hidden units of an `mlp` head.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub hidden_units: u64,
    /// Rename labels on the way in: `0=negative,1=positive`.
    #[arg(long, value_name = "MAP")]
    pub label_map: Option<String>,
    /// Answer this label instead of abstaining below the threshold (sentiment: `neutral`).
    #[arg(long)]
    pub neutral_label: Option<String>,
    /// Precision the abstain threshold is chosen for, on validation data.
    #[arg(long, default_value_t = 0.95)]
    pub target_precision: f32,
    /// Candidate weights of the lexical (TF-IDF) features; 0 = embedding only.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,1")]
    pub lexical_weights: Vec<f32>,
    /// The head reads layer features (every layer's mean token state, from
    /// the same one encoder pass) instead of the base vector alone.
    #[arg(long, conflicts_with = "images")]
    pub layer_features: bool,
    /// Texts without labels (CSV/TSV with a `text` column, or JSON lines),
    /// e.g. the tenant's past tickets: labels are propagated to them over a
    /// nearest-neighbour graph and they train the head beside `--data`
    /// (softmax and MLP heads).
    #[arg(long, value_name = "FILE", requires = "data")]
    pub unlabelled: Option<PathBuf>,
    /// Loss weight of a propagated label (a human label weighs 1).
    #[arg(long, default_value_t = 0.5, requires = "unlabelled", value_parser = unit_weight)]
    pub unlabelled_weight: f32,
    /// Exemplars per label kept as evidence.
    #[arg(long, default_value_t = 8)]
    pub evidence_per_class: usize,
    #[arg(long, value_enum, default_value = "gate")]
    pub promote: PromotePolicy,
    /// Write the version into DIR as a shipped head (version 0) instead of the store.
    #[arg(long, value_name = "DIR")]
    pub ship: Option<PathBuf>,
    /// Where the evaluation report goes (default: <data_dir>/reports).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub task: String,
    #[arg(long, value_name = "FILE", required_unless_present = "images")]
    pub data: Option<PathBuf>,
    /// Labelled images (one folder per label) for an image head.
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub images: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// A version other than the active one.
    #[arg(long)]
    pub version: Option<u32>,
    #[arg(long, value_name = "MAP")]
    pub label_map: Option<String>,
    /// Print the whole report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HeadsAction {
    /// Versions of a task with their cards and which one is active.
    List {
        #[arg(long)]
        task: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Make a version active.
    Promote {
        #[arg(long)]
        task: String,
        #[arg(long)]
        version: u32,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Make the previously active version active again.
    Rollback {
        #[arg(long)]
        task: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

fn load_encoder(settings: &Settings) -> anyhow::Result<inference::TextEncoder> {
    Ok(inference::load_text_encoder(
        &settings.model.name,
        &settings.models_dir,
        settings.model.device,
        settings.model.allow_download,
    )?)
}

/// The image checks' models, for image heads (fetched when missing and
/// allowed).
fn load_vision(settings: &Settings) -> anyhow::Result<crate::vision::Vision> {
    let vision = crate::vision::Vision::new(
        &settings.models_dir,
        crate::vision::pipeline::Pipeline::builtin(),
    );
    vision
        .prepare(settings.model.allow_download)
        .map_err(anyhow::Error::msg)
        .context("load the image model")?;
    Ok(vision)
}

fn label_map(spec: &Option<String>) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(match spec {
        Some(s) => parse_label_map(s)?,
        None => BTreeMap::new(),
    })
}

/// A progress bar on stderr per phase (hidden when stderr is not a terminal).
fn progress_bar() -> impl FnMut(Phase, usize, usize) {
    let mut current: Option<(Phase, ProgressBar)> = None;
    move |phase, done, total| {
        if current.as_ref().is_none_or(|(p, _)| *p != phase) {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{bar:30}] {pos}/{len} {elapsed} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{phase:?}").to_lowercase());
            current = Some((phase, bar));
        }
        if let Some((_, bar)) = &current {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done >= total {
                bar.finish();
            }
        }
    }
}

fn open_cache(settings: &Settings, enc: &dyn Embedder) -> anyhow::Result<EmbeddingCache> {
    let dir = cache_dir(&settings.data_dir);
    EmbeddingCache::open(&dir, &enc.id(), enc.dims())
        .with_context(|| format!("open the embedding cache in {}", dir.display()))
}

fn report_dir(settings: &Settings, given: &Option<PathBuf>) -> PathBuf {
    given
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("reports"))
}

/// A weight in (0, 1].
fn unit_weight(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(w) if w > 0.0 && w <= 1.0 => Ok(w),
        _ => Err(format!("{s:?}: expected a number above 0 and at most 1")),
    }
}

pub fn train(args: &TrainArgs, settings: &Settings) -> anyhow::Result<()> {
    let map = label_map(&args.label_map)?;
    let heldout = args
        .heldout
        .as_ref()
        .map(|p| dataset::load(p, &map))
        .transpose()?;
    let mut opts = TrainOptions::new(&args.task, &args.tenant);
    opts.kind = args.kind;
    opts.hidden_units = args.hidden_units as usize;
    opts.limit_per_class = args.limit_per_class;
    opts.seed = args.seed;
    opts.heldout_fraction = args.heldout_fraction;
    opts.target_precision = args.target_precision;
    opts.lexical_weights = args.lexical_weights.clone();
    opts.evidence_per_class = args.evidence_per_class;
    opts.layer_features = args.layer_features;
    opts.neutral_label = args.neutral_label.clone();
    opts.promote = args.promote;
    if let Some(file) = &args.unlabelled {
        opts.unlabelled = dataset::load_texts(file)?;
        opts.unlabelled_weight = args.unlabelled_weight;
    }
    opts.command = Some(std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let (store, ship_tmp) = match &args.ship {
        // Train into a scratch store, then copy the version out as version 0.
        Some(_) => {
            let tmp = settings
                .data_dir
                .join(format!(".ship-{}", std::process::id()));
            opts.promote = PromotePolicy::Never;
            (ModelStore::new(&tmp, Path::new("/nonexistent")), Some(tmp))
        }
        None => (
            ModelStore::new(&settings.data_dir, &settings.models_dir),
            None,
        ),
    };
    let mut bar = progress_bar();
    let descriptions: Option<BTreeMap<String, String>> = match &args.descriptions {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read {}", file.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected a JSON object of label → description",
                    file.display()
                )
            })?)
        }
        None => None,
    };
    let outcome = match (descriptions, &args.data) {
        _ if args.images.is_some() => {
            let dir = args.images.as_deref().unwrap_or(Path::new("."));
            let vision = load_vision(settings)?;
            let (examples, enc) = crate::ml::images::ImageEmbedder::from_dir(&vision, dir)?;
            let mut cache = open_cache(settings, &enc)?;
            // No words to count in an image.
            opts.lexical_weights = vec![0.0];
            pipeline::train(&store, &enc, &mut cache, examples, None, &opts, &mut bar)?
        }
        (Some(descriptions), None) => {
            let enc = load_encoder(settings)?;
            let layers = LayerFeatures(&enc);
            let enc: &dyn Embedder = if args.layer_features { &layers } else { &enc };
            pipeline::zero_shot(
                &store,
                enc,
                &mut open_cache(settings, enc)?,
                &descriptions,
                heldout.as_deref().unwrap_or_default(),
                &opts,
                &mut bar,
            )?
        }
        (descriptions, Some(data)) => {
            opts.descriptions = descriptions;
            let enc = load_encoder(settings)?;
            let layers = LayerFeatures(&enc);
            let enc: &dyn Embedder = if args.layer_features { &layers } else { &enc };
            pipeline::train(
                &store,
                enc,
                &mut open_cache(settings, enc)?,
                dataset::load(data, &map)?,
                heldout,
                &opts,
                &mut bar,
            )?
        }
        (None, None) => {
            anyhow::bail!("give --data FILE (or --descriptions FILE for a zero-shot head)")
        }
    };
    let stem = format!("{}-{}-v{}", args.tenant, args.task, outcome.version);
    let mut report = outcome.report.clone();
    let mut card = outcome.card.clone();
    if let (Some(dir), Some(tmp)) = (&args.ship, &ship_tmp) {
        let mut model = store.load(&args.tenant, &args.task, outcome.version)?;
        model.card.version = 0;
        model.card.tenant = "shipped".into();
        model.card.gate = None;
        model.save(dir)?;
        let _ = std::fs::remove_dir_all(tmp);
        report.version = 0;
        card = model.card;
        eprintln!("shipped head written to {}", dir.display());
    }
    let files = report.write_files(&report_dir(settings, &args.report_dir), &stem)?;
    println!(
        "{}",
        serde_json::json!({
            "task": args.task, "tenant": args.tenant, "version": card.version,
            "promoted": outcome.promoted, "kind": card.kind, "lexical_weight": card.lexical_weight, "gate": card.gate,
            "metrics": card.metrics, "training": card.training,
            "report": files,
        })
    );
    Ok(())
}

pub fn eval(args: &EvalArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = ModelStore::new(&settings.data_dir, &settings.models_dir);
    let model = match args.version {
        Some(v) => store.load(&args.tenant, &args.task, v)?,
        None => store.load_active(&args.tenant, &args.task)?,
    };
    let mut bar = progress_bar();
    let report = match (&args.images, &args.data) {
        (Some(dir), _) => {
            let vision = load_vision(settings)?;
            let (examples, enc) = crate::ml::images::ImageEmbedder::from_dir(&vision, dir)?;
            let mut cache = open_cache(settings, &enc)?;
            pipeline::evaluate_model(&model, &enc, &mut cache, &examples, &mut bar)?
        }
        (None, Some(data)) => {
            let examples = dataset::load(data, &label_map(&args.label_map)?)?;
            let enc = load_encoder(settings)?;
            let layers = LayerFeatures(&enc);
            let enc: &dyn Embedder = if model.card.reads_layers() {
                &layers
            } else {
                &enc
            };
            let mut cache = open_cache(settings, enc)?;
            pipeline::evaluate_model(&model, enc, &mut cache, &examples, &mut bar)?
        }
        (None, None) => anyhow::bail!("give --data FILE (or --images DIR for an image head)"),
    };
    let stem = format!("{}-{}-v{}-eval", args.tenant, args.task, model.card.version);
    let files = report.write_files(&report_dir(settings, &args.report_dir), &stem)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}",
            serde_json::json!({ "task": args.task, "tenant": args.tenant,
                "version": model.card.version, "metrics": &report.summary, "report": files })
        );
    }
    eprintln!("report: {}", files[1].display());
    Ok(())
}

pub fn heads(action: &HeadsAction, settings: &Settings) -> anyhow::Result<()> {
    let store = ModelStore::new(&settings.data_dir, &settings.models_dir);
    match action {
        HeadsAction::List { task, tenant } => {
            let active = store.active(tenant, task)?;
            let cards: Vec<_> = store
                .versions(tenant, task)?
                .into_iter()
                .map(|v| store.card(tenant, task, v))
                .collect::<Result<_, _>>()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "task": task, "tenant": tenant, "active": active, "versions": cards,
                }))?
            );
        }
        HeadsAction::Promote {
            task,
            version,
            tenant,
        } => {
            store.promote(tenant, task, *version)?;
            println!(
                "{}",
                serde_json::json!({ "task": task, "tenant": tenant, "active": version })
            );
        }
        HeadsAction::Rollback { task, tenant } => {
            let v = store.rollback(tenant, task)?;
            println!(
                "{}",
                serde_json::json!({ "task": task, "tenant": tenant, "active": v })
            );
        }
    }
    Ok(())
}
