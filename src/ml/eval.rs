//! Evaluation of a label head on labelled examples: accuracy, macro-F1,
//! per-class precision/recall/F1, confusion matrix, expected calibration
//! error, coverage and precision at the head's threshold, and the
//! precision/coverage curve. Rendered as JSON, Markdown and PNG.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::inference::calibration::ece;

/// One judged example.
#[derive(Debug, Clone)]
pub struct Judged {
    pub gold: String,
    /// The most probable label.
    pub top: String,
    /// `None` when the head abstained (or said neutral).
    pub label: Option<String>,
    pub confidence: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassMetrics {
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confusion {
    /// Row and column order: gold labels on rows, predictions on columns.
    pub labels: Vec<String>,
    pub matrix: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub coverage: f32,
    pub precision: f32,
    /// The confidence of the least confident answer kept at this coverage.
    pub threshold: f32,
}

/// The headline numbers, also kept in the model card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalSummary {
    pub examples: usize,
    pub accuracy: f32,
    pub macro_f1: f32,
    pub ece: f32,
    pub threshold: f32,
    /// Share of examples answered (not abstained) at the threshold.
    pub coverage: f32,
    /// Accuracy of the answered examples at the threshold.
    pub precision_at_threshold: f32,
    /// Accuracy of the 80 % most confident answers.
    pub precision_at_80_coverage: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub task: String,
    pub tenant: String,
    pub version: u32,
    /// The headline numbers, at the top level of the JSON.
    #[serde(flatten)]
    pub summary: EvalSummary,
    pub per_class: BTreeMap<String, ClassMetrics>,
    pub confusion: Confusion,
    pub curve: Vec<CurvePoint>,
}

fn ratio(a: usize, b: usize) -> f32 {
    if b == 0 {
        0.0
    } else {
        a as f32 / b as f32
    }
}

/// Precision of the `coverage` share of most confident answers.
fn precision_at(sorted: &[(f32, bool)], coverage: f32) -> CurvePoint {
    let k = ((sorted.len() as f32 * coverage).ceil() as usize).clamp(1, sorted.len().max(1));
    let kept = &sorted[..k.min(sorted.len())];
    CurvePoint {
        coverage: ratio(kept.len(), sorted.len()),
        precision: ratio(kept.iter().filter(|x| x.1).count(), kept.len()),
        threshold: kept.last().map_or(1.0, |x| x.0),
    }
}

/// Scores `judged` against `model_labels` (the head's label set); gold labels
/// the head does not know count as errors and get a confusion row.
pub fn evaluate(
    task: &str,
    tenant: &str,
    version: u32,
    model_labels: &[String],
    threshold: f32,
    judged: &[Judged],
) -> EvalReport {
    let mut labels: Vec<String> = model_labels.to_vec();
    for j in judged {
        if !labels.contains(&j.gold) {
            labels.push(j.gold.clone());
        }
    }
    let index: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let n = labels.len();
    let mut matrix = vec![vec![0usize; n]; n];
    for j in judged {
        matrix[index[j.gold.as_str()]][index[j.top.as_str()]] += 1;
    }
    let mut per_class = BTreeMap::new();
    let mut f1_sum = 0.0;
    let mut f1_count = 0;
    for (i, l) in labels.iter().enumerate() {
        let tp = matrix[i][i];
        let predicted: usize = matrix.iter().map(|r| r[i]).sum();
        let support: usize = matrix[i].iter().sum();
        let (p, r) = (ratio(tp, predicted), ratio(tp, support));
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        // Macro-F1 over the labels that occur (gold or predicted).
        if support > 0 || predicted > 0 {
            f1_sum += f1;
            f1_count += 1;
        }
        per_class.insert(
            l.clone(),
            ClassMetrics {
                precision: p,
                recall: r,
                f1,
                support,
            },
        );
    }
    let pairs: Vec<(f32, bool)> = judged
        .iter()
        .map(|j| (j.confidence, j.top == j.gold))
        .collect();
    let correct = pairs.iter().filter(|p| p.1).count();
    let answered: Vec<&Judged> = judged.iter().filter(|j| j.label.is_some()).collect();
    let answered_ok = answered
        .iter()
        .filter(|j| j.label.as_deref() == Some(j.gold.as_str()))
        .count();
    let mut sorted = pairs.clone();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let curve: Vec<CurvePoint> = (1..=20)
        .map(|i| precision_at(&sorted, i as f32 / 20.0))
        .collect();
    EvalReport {
        task: task.into(),
        tenant: tenant.into(),
        version,
        summary: EvalSummary {
            examples: judged.len(),
            accuracy: ratio(correct, judged.len()),
            macro_f1: if f1_count == 0 {
                0.0
            } else {
                f1_sum / f1_count as f32
            },
            ece: ece(&pairs, 15),
            threshold,
            coverage: ratio(answered.len(), judged.len()),
            precision_at_threshold: ratio(answered_ok, answered.len()),
            precision_at_80_coverage: precision_at(&sorted, 0.8).precision,
        },
        per_class,
        confusion: Confusion { labels, matrix },
        curve,
    }
}

impl EvalReport {
    /// The report for people: `confusion_png` and `curve_png` are the file
    /// names of the pictures written beside it.
    pub fn markdown(&self, confusion_png: &str, curve_png: &str) -> String {
        let pct = |x: f32| format!("{:.2} %", x * 100.0);
        let mut s = format!(
            "# Evaluation: task `{}`, tenant `{}`, version {}\n\n\
             | metric | value |\n|---|---|\n\
             | examples | {} |\n| accuracy | {} |\n| macro-F1 | {} |\n\
             | expected calibration error (15 bins) | {:.4} |\n\
             | threshold | {:.4} |\n| coverage at threshold | {} |\n\
             | precision at threshold | {} |\n| precision at 80 % coverage | {} |\n\n",
            self.task,
            self.tenant,
            self.version,
            self.summary.examples,
            pct(self.summary.accuracy),
            pct(self.summary.macro_f1),
            self.summary.ece,
            self.summary.threshold,
            pct(self.summary.coverage),
            pct(self.summary.precision_at_threshold),
            pct(self.summary.precision_at_80_coverage),
        );
        s += "## Per class\n\n| label | precision | recall | F1 | support |\n|---|---|---|---|---|\n";
        for (l, m) in &self.per_class {
            s += &format!(
                "| {l} | {:.3} | {:.3} | {:.3} | {} |\n",
                m.precision, m.recall, m.f1, m.support
            );
        }
        s += &format!(
            "\n## Confusion matrix\n\nRows are gold labels, columns predictions (most probable label), \
             in this order: {}.\n\n![confusion matrix, row-normalised]({confusion_png})\n\n",
            self.confusion.labels.join(", ")
        );
        if self.confusion.labels.len() <= 12 {
            s += "| gold \\ predicted |";
            for l in &self.confusion.labels {
                s += &format!(" {l} |");
            }
            s += "\n|---|";
            s += &"---|".repeat(self.confusion.labels.len());
            s += "\n";
            for (l, row) in self.confusion.labels.iter().zip(&self.confusion.matrix) {
                s += &format!("| {l} |");
                for c in row {
                    s += &format!(" {c} |");
                }
                s += "\n";
            }
        } else {
            s +=
                "The matrix has too many labels for a table: the PNG and the JSON report hold it. \
                   Largest confusions:\n\n| gold | predicted | count |\n|---|---|---|\n";
            let mut off: Vec<(usize, usize, usize)> = Vec::new();
            for (i, row) in self.confusion.matrix.iter().enumerate() {
                for (j, &c) in row.iter().enumerate() {
                    if i != j && c > 0 {
                        off.push((c, i, j));
                    }
                }
            }
            off.sort_by(|a, b| b.cmp(a));
            for (c, i, j) in off.into_iter().take(15) {
                s += &format!(
                    "| {} | {} | {c} |\n",
                    self.confusion.labels[i], self.confusion.labels[j]
                );
            }
        }
        s += &format!(
            "\n## Precision and coverage\n\nKeep only the most confident answers: \
             precision against the share kept (x: coverage 0–1, y: precision 0–1).\n\n\
             ![precision/coverage curve]({curve_png})\n\n| coverage | precision | confidence ≥ |\n|---|---|---|\n"
        );
        for p in &self.curve {
            s += &format!(
                "| {:.2} | {:.4} | {:.4} |\n",
                p.coverage, p.precision, p.threshold
            );
        }
        s
    }

    /// Writes `<stem>.json`, `<stem>.md`, `<stem>-confusion.png` and
    /// `<stem>-curve.png` into `dir`.
    pub fn write_files(&self, dir: &Path, stem: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let (conf, curve) = (format!("{stem}-confusion.png"), format!("{stem}-curve.png"));
        let paths = vec![
            dir.join(format!("{stem}.json")),
            dir.join(format!("{stem}.md")),
            dir.join(&conf),
            dir.join(&curve),
        ];
        std::fs::write(&paths[0], serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::write(&paths[1], self.markdown(&conf, &curve))?;
        write_png(&paths[2], &heatmap(&self.confusion))?;
        write_png(&paths[3], &curve_plot(&self.curve))?;
        Ok(paths)
    }
}

/// An RGB picture.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Picture {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![255; (width * height * 3) as usize],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = ((y as u32 * self.width + x as u32) * 3) as usize;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for s in 0..=steps {
            let x = x0 + (x1 - x0) * s / steps;
            let y = y0 + (y1 - y0) * s / steps;
            for d in 0..2 {
                self.set(x, y + d, c);
            }
        }
    }
}

/// Row-normalised confusion as a heat map: white (0) to dark blue (1), a
/// grey frame around the diagonal cells.
pub fn heatmap(c: &Confusion) -> Picture {
    let n = c.labels.len().max(1) as u32;
    let cell = (640 / n).clamp(4, 48);
    let mut p = Picture::new(n * cell, n * cell);
    for (i, row) in c.matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (j, &v) in row.iter().enumerate() {
            let t = ratio(v, total);
            let colour = [
                (255.0 * (1.0 - t * 0.9)) as u8,
                (255.0 * (1.0 - t * 0.75)) as u8,
                (255.0 * (1.0 - t * 0.35)) as u8,
            ];
            for y in 0..cell {
                for x in 0..cell {
                    let edge = x == 0 || y == 0 || x == cell - 1 || y == cell - 1;
                    let c = if edge && i == j {
                        [128, 128, 128]
                    } else {
                        colour
                    };
                    p.set(
                        (j as u32 * cell + x) as i64,
                        (i as u32 * cell + y) as i64,
                        c,
                    );
                }
            }
        }
    }
    p
}

/// The precision/coverage curve on axes from 0 to 1, with grid lines at 0.1.
pub fn curve_plot(points: &[CurvePoint]) -> Picture {
    let (w, h, m) = (480i64, 360i64, 30i64);
    let mut p = Picture::new(w as u32, h as u32);
    let to = |cov: f32, prec: f32| {
        (
            m + ((w - 2 * m) as f32 * cov) as i64,
            h - m - ((h - 2 * m) as f32 * prec) as i64,
        )
    };
    for k in 0..=10 {
        let f = k as f32 / 10.0;
        p.line(to(f, 0.0), to(f, 1.0), [230, 230, 230]);
        p.line(to(0.0, f), to(1.0, f), [230, 230, 230]);
    }
    p.line(to(0.0, 0.0), to(1.0, 0.0), [0, 0, 0]);
    p.line(to(0.0, 0.0), to(0.0, 1.0), [0, 0, 0]);
    for pair in points.windows(2) {
        p.line(
            to(pair[0].coverage, pair[0].precision),
            to(pair[1].coverage, pair[1].precision),
            [200, 40, 40],
        );
    }
    p
}

pub fn write_png(path: &Path, pic: &Picture) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, pic.width, pic.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(std::io::Error::other)?;
    w.write_image_data(&pic.rgb)
        .map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(gold: &str, top: &str, conf: f32, threshold: f32) -> Judged {
        Judged {
            gold: gold.into(),
            top: top.into(),
            label: (conf >= threshold).then(|| top.to_string()),
            confidence: conf,
        }
    }

    #[test]
    fn metrics_match_a_hand_computed_example() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let t = 0.6;
        let judged = vec![
            j("a", "a", 0.9, t),
            j("a", "a", 0.8, t),
            j("a", "b", 0.55, t),
            j("b", "b", 0.7, t),
            j("b", "a", 0.65, t),
        ];
        let r = evaluate("x", "t", 1, &labels, t, &judged);
        assert_eq!(r.summary.examples, 5);
        assert!((r.summary.accuracy - 0.6).abs() < 1e-6);
        assert_eq!(r.confusion.matrix, vec![vec![2, 1], vec![1, 1]]);
        // a: p = 2/3, r = 2/3; b: p = 1/2, r = 1/2.
        let a = &r.per_class["a"];
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-6 && (a.recall - 2.0 / 3.0).abs() < 1e-6);
        assert!((r.summary.macro_f1 - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-6);
        // Four answered (≥ 0.6), three of them right.
        assert!((r.summary.coverage - 0.8).abs() < 1e-6);
        assert!((r.summary.precision_at_threshold - 0.75).abs() < 1e-6);
        // The four most confident: 0.9 ok, 0.8 ok, 0.7 ok, 0.65 wrong.
        assert!((r.summary.precision_at_80_coverage - 0.75).abs() < 1e-6);
        assert_eq!(r.curve.len(), 20);
        assert!((r.curve[19].precision - 0.6).abs() < 1e-6);
        assert!(r.summary.ece > 0.0);
    }

    #[test]
    fn unknown_gold_labels_are_errors_with_their_own_row() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let r = evaluate("x", "t", 1, &labels, 0.0, &[j("c", "a", 0.9, 0.0)]);
        assert_eq!(r.confusion.labels, ["a", "b", "c"]);
        assert_eq!(r.confusion.matrix[2], vec![1, 0, 0]);
        assert_eq!(r.summary.accuracy, 0.0);
    }

    #[test]
    fn report_files_are_written_and_the_pngs_decode() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let r = evaluate(
            "x",
            "t",
            1,
            &labels,
            0.5,
            &[j("a", "a", 0.9, 0.5), j("b", "a", 0.6, 0.5)],
        );
        let dir = std::env::temp_dir().join(format!("helpdesk-eval-{}", std::process::id()));
        let paths = r.write_files(&dir, "report").unwrap();
        let md = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(md.contains("| accuracy | 50.00 % |"), "{md}");
        assert!(md.contains("report-confusion.png"));
        for png_path in &paths[2..] {
            let dec = png::Decoder::new(std::io::BufReader::new(
                std::fs::File::open(png_path).unwrap(),
            ));
            let info = dec.read_info().unwrap().info().clone();
            assert!(info.width > 0 && info.height > 0);
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths[0]).unwrap()).unwrap();
        for key in [
            "accuracy",
            "macro_f1",
            "ece",
            "coverage",
            "precision_at_threshold",
            "per_class",
            "confusion",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
