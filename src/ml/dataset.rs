//! Labelled examples from files: CSV or TSV with a header, or JSON lines.
//!
//! The text column is the first of `text`, `sentence`, `utterance`; the label
//! column the first of `label`, `category`, `intent`. A label map renames
//! labels on the way in (SST-2's `0`/`1` → `negative`/`positive`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::inference::training::SplitMix;

const TEXT_COLUMNS: &[&str] = &["text", "sentence", "utterance"];
const LABEL_COLUMNS: &[&str] = &["label", "category", "intent"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub text: String,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}: no text column (one of {TEXT_COLUMNS:?}) in the header {header:?}")]
    NoTextColumn { file: String, header: Vec<String> },
    #[error("{file}: no label column (one of {LABEL_COLUMNS:?}) in the header {header:?}")]
    NoLabelColumn { file: String, header: Vec<String> },
    #[error("{file}, line {line}: {message}")]
    Row {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{0}: no examples")]
    Empty(String),
    #[error("bad label map {0:?}: expected `from=to,from=to`")]
    LabelMap(String),
}

/// `from=to,from=to` → map. Labels not in the map keep their name.
pub fn parse_label_map(spec: &str) -> Result<BTreeMap<String, String>, DatasetError> {
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((f, t)) if !f.trim().is_empty() && !t.trim().is_empty() => {
                Ok((f.trim().to_string(), t.trim().to_string()))
            }
            _ => Err(DatasetError::LabelMap(spec.to_string())),
        })
        .collect()
}

fn column(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| header.iter().position(|h| h.trim().eq_ignore_ascii_case(n)))
}

/// Reads a dataset; the format comes from the extension (`.jsonl`/`.json`,
/// `.tsv`, anything else CSV). Texts are trimmed; empty texts are errors.
pub fn load(
    path: &Path,
    label_map: &BTreeMap<String, String>,
) -> Result<Vec<Example>, DatasetError> {
    let mut rows = read(path, true)?;
    for r in &mut rows {
        if let Some(to) = label_map.get(&r.label) {
            r.label = to.clone();
        }
    }
    Ok(rows)
}

/// Reads texts without labels (a label column, if any, is ignored): the same
/// formats as `load`, e.g. a tenant's unlabelled ticket history.
pub fn load_texts(path: &Path) -> Result<Vec<String>, DatasetError> {
    Ok(read(path, false)?.into_iter().map(|e| e.text).collect())
}

/// Rows of a file; `labels`: whether each must have one (else the label is
/// left empty).
fn read(path: &Path, labels: bool) -> Result<Vec<Example>, DatasetError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DatasetError::Io(name.clone(), e))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let rows = match ext.as_str() {
        "jsonl" | "json" | "ndjson" => parse_jsonl(&name, &bytes, labels)?,
        "tsv" => parse_delimited(&name, &bytes, b'\t', labels)?,
        _ => parse_delimited(&name, &bytes, b',', labels)?,
    };
    if rows.is_empty() {
        return Err(DatasetError::Empty(name));
    }
    Ok(rows)
}

/// A row as an example; `label` is `None` when the file's labels are not
/// wanted (then the example's label is empty).
fn check(file: &str, line: u64, text: &str, label: Option<&str>) -> Result<Example, DatasetError> {
    let err = |message: &str| DatasetError::Row {
        file: file.to_string(),
        line,
        message: message.to_string(),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(err("empty text"));
    }
    let label = match label.map(str::trim) {
        Some("") => return Err(err("empty label")),
        Some(l) => l.to_string(),
        None => String::new(),
    };
    Ok(Example {
        text: text.to_string(),
        label,
    })
}

fn parse_delimited(
    file: &str,
    bytes: &[u8],
    delimiter: u8,
    labels: bool,
) -> Result<Vec<Example>, DatasetError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        // SST-2's TSV has bare quotes inside sentences.
        .quoting(delimiter != b'\t')
        .flexible(false)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| DatasetError::Row {
            file: file.into(),
            line: 1,
            message: e.to_string(),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    let t = column(&header, TEXT_COLUMNS).ok_or_else(|| DatasetError::NoTextColumn {
        file: file.into(),
        header: header.clone(),
    })?;
    let l = match labels {
        true => {
            Some(
                column(&header, LABEL_COLUMNS).ok_or_else(|| DatasetError::NoLabelColumn {
                    file: file.into(),
                    header: header.clone(),
                })?,
            )
        }
        false => None,
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DatasetError::Row {
            file: file.into(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        out.push(check(
            file,
            line,
            record.get(t).unwrap_or(""),
            l.map(|l| record.get(l).unwrap_or("")),
        )?);
    }
    Ok(out)
}

fn parse_jsonl(file: &str, bytes: &[u8], labels: bool) -> Result<Vec<Example>, DatasetError> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row_err = |message: String| DatasetError::Row {
            file: file.into(),
            line: i as u64 + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| row_err(e.to_string()))?;
        let field = |names: &[&str]| {
            names.iter().find_map(|n| match v.get(n) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(x)) => Some(x.to_string()),
                _ => None,
            })
        };
        let text = field(TEXT_COLUMNS).ok_or_else(|| row_err("no text field".into()))?;
        let label = match labels {
            true => Some(field(LABEL_COLUMNS).ok_or_else(|| row_err("no label field".into()))?),
            false => None,
        };
        out.push(check(file, i as u64 + 1, &text, label.as_deref())?);
    }
    Ok(out)
}

/// At most `n` examples of each label, drawn with a seeded shuffle (the same
/// subset for the same data and seed).
pub fn limit_per_class(examples: &[Example], n: usize, seed: u64) -> Vec<Example> {
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    SplitMix::new(seed).shuffle(&mut idx);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut keep: Vec<usize> = idx
        .into_iter()
        .filter(|&i| {
            let c = taken.entry(examples[i].label.as_str()).or_default();
            *c += 1;
            *c <= n
        })
        .collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| examples[i].clone()).collect()
}

/// A stratified split: `frac` of each label (at least one when it has two or
/// more examples) goes to the second part.
pub fn split(examples: &[Example], frac: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_label.entry(e.label.as_str()).or_default().push(i);
    }
    let mut rng = SplitMix::new(seed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for idx in by_label.values_mut() {
        rng.shuffle(idx);
        let n = if idx.len() >= 2 {
            ((idx.len() as f64 * frac).round() as usize).clamp(1, idx.len() - 1)
        } else {
            0
        };
        b.extend_from_slice(&idx[..n]);
        a.extend_from_slice(&idx[n..]);
    }
    a.sort_unstable();
    b.sort_unstable();
    let pick = |v: Vec<usize>| v.into_iter().map(|i| examples[i].clone()).collect();
    (pick(a), pick(b))
}

/// sha256 over every (text, label), in order: the model card's data hash.
pub fn data_hash(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        h.update(e.text.as_bytes());
        h.update([0x1f]);
        h.update(e.label.as_bytes());
        h.update([0x1e]);
    }
    hex::encode(h.finalize())
}

/// The sorted label set and each example's index into it.
pub fn label_targets(examples: &[Example]) -> (Vec<String>, Vec<usize>) {
    let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let targets = examples
        .iter()
        .map(|e| labels.binary_search(&e.label).unwrap_or_default())
        .collect();
    (labels, targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("helpdesk-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_csv_tsv_and_jsonl_with_their_column_names() {
        let none = BTreeMap::new();
        let csv = write(
            "a.csv",
            "text,category\n\"I lost my card, help\",lost_card\nrefund?,refund\n",
        );
        assert_eq!(
            load(&csv, &none).unwrap(),
            vec![
                Example {
                    text: "I lost my card, help".into(),
                    label: "lost_card".into()
                },
                Example {
                    text: "refund?".into(),
                    label: "refund".into()
                }
            ]
        );
        let tsv = write("a.tsv", "sentence\tlabel\nit 's \" good \t1\nbad \t0\n");
        let map = parse_label_map("0=negative,1=positive").unwrap();
        let rows = load(&tsv, &map).unwrap();
        assert_eq!(rows[0].text, "it 's \" good");
        assert_eq!(rows[0].label, "positive");
        assert_eq!(rows[1].label, "negative");
        let jsonl = write(
            "a.jsonl",
            "{\"text\":\"vpn down\",\"label\":\"network\"}\n\n{\"utterance\":\"x\",\"intent\":3}\n",
        );
        let rows = load(&jsonl, &none).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].label, "3");
    }

    #[test]
    fn texts_without_labels_read_from_the_same_formats() {
        let csv = write("u.csv", "id,text\n1,\"printer jams, again\"\n2,vpn down\n");
        assert_eq!(
            load_texts(&csv).unwrap(),
            ["printer jams, again", "vpn down"]
        );
        // A label column is ignored, and a labelled loader still wants one.
        let jsonl = write(
            "u.jsonl",
            "{\"text\":\"a\"}\n{\"text\":\" b \",\"label\":\"x\"}\n",
        );
        assert_eq!(load_texts(&jsonl).unwrap(), ["a", "b"]);
        assert!(load(&jsonl, &BTreeMap::new()).is_err());
        let e = load_texts(&write("u2.csv", "text\nok\n\" \"\n")).unwrap_err();
        assert!(e.to_string().contains("line 3: empty text"), "{e}");
        let e = load_texts(&write("u3.csv", "body\nx\n")).unwrap_err();
        assert!(matches!(e, DatasetError::NoTextColumn { .. }), "{e}");
    }

    #[test]
    fn bad_files_name_the_problem() {
        let none = BTreeMap::new();
        let e = load(&write("b.csv", "body,label\nx,y\n"), &none).unwrap_err();
        assert!(matches!(e, DatasetError::NoTextColumn { .. }), "{e}");
        let e = load(&write("c.csv", "text,label\n,y\n"), &none).unwrap_err();
        assert!(e.to_string().contains("line 2: empty text"), "{e}");
        let e = load(&write("d.jsonl", "{\"text\":\"a\"}\n"), &none).unwrap_err();
        assert!(e.to_string().contains("no label field"), "{e}");
        let e = load(&write("e.csv", "text,label\n"), &none).unwrap_err();
        assert!(matches!(e, DatasetError::Empty(_)));
        assert!(parse_label_map("0negative").is_err());
    }

    fn examples(per: usize) -> Vec<Example> {
        (0..3)
            .flat_map(|c| {
                (0..per).map(move |i| Example {
                    text: format!("t{c}-{i}"),
                    label: format!("l{c}"),
                })
            })
            .collect()
    }

    #[test]
    fn limit_per_class_is_seeded_and_caps_every_label() {
        let ex = examples(20);
        let a = limit_per_class(&ex, 5, 1);
        assert_eq!(a.len(), 15);
        assert_eq!(a, limit_per_class(&ex, 5, 1));
        assert_ne!(a, limit_per_class(&ex, 5, 2));
        let (labels, targets) = label_targets(&a);
        assert_eq!(labels, ["l0", "l1", "l2"]);
        for c in 0..3 {
            assert_eq!(targets.iter().filter(|&&t| t == c).count(), 5);
        }
    }

    #[test]
    fn split_is_stratified_and_disjoint() {
        let ex = examples(10);
        let (a, b) = split(&ex, 0.2, 7);
        assert_eq!((a.len(), b.len()), (24, 6));
        assert!(b.iter().all(|e| !a.contains(e)));
        assert_ne!(data_hash(&a), data_hash(&b));
    }
}
