//! Experiment: does tuning the encoder's top layer beat the frozen encoder?
//! Banking77 (bench/banking77), 10 per intent by default (`PER_CLASS=0`: all),
//! test accuracy of a softmax head on frozen vectors vs on the tuned branch.
//!
//! `cargo run --release --example tune_top` (env: PER_CLASS, SEED, EPOCHS, LR,
//! WARMUP, PATIENCE, CONTRASTIVE, LABEL_AUG; TRAIN, TEST and LABEL_MAP for
//! another data set, e.g. `TRAIN=bench/sst2/train.tsv
//! TEST=tests/fixtures/sst2_dev.tsv LABEL_MAP=0=negative,1=positive`)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use helpdesk::inference::bert::TopLayers;
use helpdesk::inference::training::{train_softmax, TrainConfig};
use helpdesk::inference::{load_text_encoder, DeviceKind, TextEncoder};
use helpdesk::ml::dataset::{label_targets, limit_per_class, load, parse_label_map, Example};
use helpdesk::ml::tune::{tune_top_layer, TuneConfig};

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn accuracy(
    head: &helpdesk::inference::training::SoftmaxHead,
    vecs: &[Vec<f32>],
    gold: &[Example],
) -> f64 {
    let ok = vecs
        .iter()
        .zip(gold)
        .filter(|(v, e)| head.predict(v).top == e.label)
        .count();
    ok as f64 / gold.len() as f64
}

fn main() -> anyhow::Result<()> {
    let per_class: usize = env("PER_CLASS", 10);
    let seed: u64 = env("SEED", 42);
    let enc: TextEncoder = load_text_encoder(
        "all-minilm-l6-v2",
        Path::new("models"),
        DeviceKind::Cpu,
        false,
    )?;
    let map = match std::env::var("LABEL_MAP") {
        Ok(spec) => parse_label_map(&spec)?,
        Err(_) => BTreeMap::new(),
    };
    let train_path = env("TRAIN", "bench/banking77/train.csv".to_string());
    let test_path = env("TEST", "bench/banking77/test.csv".to_string());
    let mut train = load(Path::new(&train_path), &map)?;
    if per_class > 0 {
        train = limit_per_class(&train, per_class, seed);
    }
    let test = load(Path::new(&test_path), &map)?;
    let (labels, targets) = label_targets(&train);
    let t0 = Instant::now();
    let (mut base, mut mids) = (Vec::new(), Vec::new());
    for chunk in train.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let (b, m) = enc.embed_with_mid(&texts, 1)?;
        base.extend(b);
        mids.extend(m);
    }
    let test_texts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let mut test_base = Vec::new();
    for c in test_texts.chunks(64) {
        test_base.extend(enc.embed(c, true, true)?);
    }
    eprintln!(
        "encoded {} train + {} test in {:.1} s",
        train.len(),
        test.len(),
        t0.elapsed().as_secs_f32()
    );
    let cfg = TrainConfig {
        seed,
        ..Default::default()
    };
    let (frozen, _) = train_softmax(&base, &targets, labels.clone(), &cfg)?;
    println!(
        "frozen encoder: test accuracy {:.4}",
        accuracy(&frozen, &test_base, &test)
    );
    if env("LABEL_AUG", 0u8) > 0 {
        let names: Vec<String> = labels.iter().map(|l| l.replace('_', " ")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let name_vecs = enc.embed(&refs, true, true)?;
        for copies in [1usize, 2, 4] {
            let mut x = base.clone();
            let mut y = targets.clone();
            for _ in 0..copies {
                x.extend(name_vecs.iter().cloned());
                y.extend(0..labels.len());
            }
            let (h, _) = train_softmax(&x, &y, labels.clone(), &cfg)?;
            println!(
                "label names x{copies} as examples: test accuracy {:.4}",
                accuracy(&h, &test_base, &test)
            );
        }
        return Ok(());
    }

    let model = enc.model();
    let layer = model.layer_weights(model.num_layers() - 1)?;
    let tcfg = TuneConfig {
        seed,
        max_epochs: env("EPOCHS", 12),
        lr_layer: env("LR", 1e-4),
        contrastive: env("CONTRASTIVE", 0u8) == 1,
        warmup_epochs: env("WARMUP", 3),
        patience: env("PATIENCE", 2),
        ..Default::default()
    };
    let (tuned, report) = tune_top_layer(
        &layer,
        model.heads(),
        model.layer_norm_eps(),
        &mids,
        &targets,
        labels.len(),
        &tcfg,
        |_, _| {},
    )?;
    println!("tuning: {report:?}");
    let top = TopLayers::from_weights(&[tuned], model.heads())?;
    let branch = |texts: &[&str]| -> anyhow::Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for c in texts.chunks(64) {
            out.extend(enc.embed_branched(c, &top)?.1);
        }
        Ok(out)
    };
    let train_texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
    let (tuned_head, rep) = train_softmax(&branch(&train_texts)?, &targets, labels, &cfg)?;
    println!(
        "tuned top layer: test accuracy {:.4} (val {:.4})",
        accuracy(&tuned_head, &branch(&test_texts)?, &test),
        rep.val_accuracy
    );

    // What a triage with the branch costs against one base pass: the test
    // texts (Banking77's 3,080) in batches of 32, interleaved, best of 5.
    let time = |f: &dyn Fn(&[&str]) -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let t = Instant::now();
        for c in test_texts.chunks(32) {
            f(c)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let (mut one, mut both) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        one = one.min(time(&|c| Ok(enc.embed(c, true, true).map(|_| ())?))?);
        both = both.min(time(&|c| Ok(enc.embed_branched(c, &top).map(|_| ())?))?);
    }
    println!(
        "triage cost: base pass {one:.2} s, base + tuned branch {both:.2} s: {:.3}x",
        both / one
    );
    Ok(())
}
