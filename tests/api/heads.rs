//! The untrained label heads on real text: Banking77 with 10 labelled
//! examples per intent (the few-label regime they are for).

use helpdesk::inference::heads::{KnnHead, ZeroShotHead};
use helpdesk::inference::lexical::train_mixed;
use helpdesk::inference::training::{train_softmax, TrainConfig};
use helpdesk::inference::{load_text_encoder, DeviceKind, TextEncoder};

use crate::helpers::{models_dir, repo_path, require_model, MODEL};

fn read_csv(name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path(&format!("tests/fixtures/{name}"))).unwrap();
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        // `text,label`; the text may be quoted and contain commas, the label never does.
        let (t, l) = line.rsplit_once(',').unwrap();
        let t = t
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .map_or(t.to_string(), |t| t.replace("\"\"", "\""));
        rows.push((t, l.to_string()));
    }
    rows
}

/// The sorted label set of `rows` and each row's index into it.
fn label_targets(rows: &[(String, String)]) -> (Vec<String>, Vec<usize>) {
    let mut labels: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    labels.sort();
    labels.dedup();
    let targets = rows
        .iter()
        .map(|(_, l)| labels.binary_search(l).unwrap())
        .collect();
    (labels, targets)
}

fn embed(enc: &TextEncoder, rows: &[(String, String)]) -> Vec<Vec<f32>> {
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    texts
        .chunks(64)
        .flat_map(|c| enc.embed(c, true, true).unwrap())
        .collect()
}

#[test]
fn knn_and_zero_shot_heads_classify_banking77_well_above_chance() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let train = read_csv("banking77_train10.csv");
    let test = read_csv("banking77_test4.csv");
    assert_eq!((train.len(), test.len()), (770, 308));
    let test_vecs = embed(&enc, &test);

    let knn = KnnHead::new(&train, embed(&enc, &train)).unwrap();
    assert_eq!(knn.labels().len(), 77);
    let knn_correct = test
        .iter()
        .zip(&test_vecs)
        .filter(|((_, gold), v)| knn.predict(v).top == *gold)
        .count();

    let labels = knn.labels().to_vec();
    let descriptions: Vec<String> = labels.iter().map(|l| l.replace('_', " ")).collect();
    let refs: Vec<&str> = descriptions.iter().map(String::as_str).collect();
    let zero = ZeroShotHead::new(labels, enc.embed(&refs, true, true).unwrap()).unwrap();
    let zero_correct = test
        .iter()
        .zip(&test_vecs)
        .filter(|((_, gold), v)| zero.predict(v).top == *gold)
        .count();

    let (knn_acc, zero_acc) = (knn_correct as f64 / 308.0, zero_correct as f64 / 308.0);
    eprintln!("banking77 (10/class): knn accuracy {knn_acc:.3}, zero-shot accuracy {zero_acc:.3} (chance 0.013)");
    assert!(knn_acc >= FLOOR_KNN, "knn accuracy {knn_acc}");
    assert!(zero_acc >= FLOOR_ZERO_SHOT, "zero-shot accuracy {zero_acc}");

    // Evidence: the neighbours of a test query, nearest first, with their labels.
    let p = knn.predict(&test_vecs[0]);
    assert_eq!(p.evidence.len(), knn.k);
    assert!(p
        .evidence
        .windows(2)
        .all(|w| w[0].similarity >= w[1].similarity));
    assert!(p.evidence.iter().any(|e| e.label == p.top));
}

// A few points under the accuracies measured when this test was written
// (k-NN 0.808, zero-shot 0.604 on these 308 queries), so a regression fails.
const FLOOR_KNN: f64 = 0.77;
const FLOOR_ZERO_SHOT: f64 = 0.55;

#[test]
fn a_trained_softmax_head_beats_knn_on_banking77_at_10_per_class() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let train = read_csv("banking77_train10.csv");
    let test = read_csv("banking77_test4.csv");
    let (labels, targets) = label_targets(&train);
    let cfg = TrainConfig::default();
    let (head, report) = train_softmax(&embed(&enc, &train), &targets, labels, &cfg).unwrap();
    let test_vecs = embed(&enc, &test);
    let correct = test
        .iter()
        .zip(&test_vecs)
        .filter(|((_, gold), v)| head.predict(v).top == *gold)
        .count();
    let acc = correct as f64 / test.len() as f64;
    eprintln!(
        "banking77 (10/class, 8 train + 2 validation): softmax accuracy {acc:.3}; {report:?}"
    );
    assert_eq!(report.val_examples, 154);
    assert!(acc >= FLOOR_SOFTMAX, "softmax accuracy {acc}");

    // Calibrated on validation: what the abstain threshold gives on test.
    let preds: Vec<_> = test_vecs.iter().map(|v| head.predict(v)).collect();
    let accepted: Vec<bool> = preds
        .iter()
        .zip(&test)
        .filter_map(|(p, (_, gold))| p.label.as_ref().map(|l| l == gold))
        .collect();
    let coverage = accepted.len() as f64 / test.len() as f64;
    let precision = accepted.iter().filter(|ok| **ok).count() as f64 / accepted.len().max(1) as f64;
    eprintln!(
        "threshold {:.3}: test coverage {coverage:.3}, precision {precision:.3}",
        head.threshold
    );
    assert!(report.threshold.precision >= 0.95, "{report:?}");
    // (Temperature scaling minimises validation NLL; on 154 examples that
    // need not lower ECE: measured 0.057 before, 0.070 after.)
    assert!(
        report.temperature > 0.0 && report.val_ece < 0.2,
        "{report:?}"
    );
    assert!(
        coverage > 0.3 && precision > acc,
        "coverage {coverage}, precision {precision}"
    );
}

// Measured 0.844 (0.828 before the head was refitted on training +
// validation examples); the floor is above k-NN's 0.808 on the same queries,
// which is what the test's name claims.
const FLOOR_SOFTMAX: f64 = 0.81;

/// (text, label) rows.
type Rows = Vec<(String, String)>;

fn read_split_csv(name: &str) -> (Rows, Rows) {
    let text = std::fs::read_to_string(repo_path(&format!("tests/fixtures/{name}"))).unwrap();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let (rest, split) = line.rsplit_once(',').unwrap();
        let (t, l) = rest.rsplit_once(',').unwrap();
        let row = (t.to_string(), l.to_string());
        if split == "train" {
            train.push(row)
        } else {
            test.push(row)
        }
    }
    (train, test)
}

/// Test accuracy of a head trained on `[embedding ; weight × tf-idf]`, with
/// the weight picked from `weights` on the validation split.
fn mixed_accuracy(
    train: &[(String, String)],
    train_emb: &[Vec<f32>],
    test: &[(String, String)],
    test_emb: &[Vec<f32>],
    weights: &[f32],
) -> (f64, f32) {
    let texts: Vec<&str> = train.iter().map(|(t, _)| t.as_str()).collect();
    let (labels, targets) = label_targets(train);
    let (head, _, trials) = train_mixed(
        train_emb,
        &texts,
        &targets,
        labels,
        // Without the refit on all 42 tickets: refitted, both heads get all
        // 21 test tickets right and the fixture can no longer tell them apart.
        &TrainConfig {
            refit: false,
            ..TrainConfig::default()
        },
        weights,
        4096,
        None,
    )
    .unwrap();
    eprintln!("validation trials: {trials:?}");
    let correct = test
        .iter()
        .zip(test_emb)
        .filter(|((t, gold), e)| head.predict(e, t).top == *gold)
        .count();
    (correct as f64 / test.len() as f64, head.weight)
}

/// Trained on 34 tickets (8 held for validation): embedding alone 0.905,
/// with TF-IDF 0.952. On full Banking77 the mix picked on validation
/// (weight 0.5) gives 94.03 % against 92.95 % for the embedding alone; at 10
/// examples per intent validation picks weight 0 (scripts/eval-banking77.sh).
#[test]
fn lexical_features_help_on_jargon_heavy_tickets() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let (train, test) = read_split_csv("jargon_tickets.csv");
    assert_eq!((train.len(), test.len()), (42, 21));
    let (train_emb, test_emb) = (embed(&enc, &train), embed(&enc, &test));
    let (embedding_only, _) = mixed_accuracy(&train, &train_emb, &test, &test_emb, &[0.0]);
    let (with_tfidf, _) = mixed_accuracy(&train, &train_emb, &test, &test_emb, &[1.0]);
    eprintln!("jargon: embedding {embedding_only:.3}, embedding+tf-idf {with_tfidf:.3}");
    assert!(
        with_tfidf > embedding_only,
        "lexical features did not help on jargon"
    );
}
