//! Image-kind accuracy (issue 6) on a labelled folder: `DIR/<kind>/<file>`,
//! kind one of screenshot, document, hardware, photo. Prints per-file
//! answers to stderr and one JSON line to stdout: counts per kind,
//! accuracy, and the confusion matrix (rows: truth, columns: answer).
//! `scripts/eval-kind.sh` builds the set and runs this.
//!
//! `kind_eval scan IN OUT` turns rendered text pages into simulated scans
//! (grey paper, a small skew, blur, sensor noise, JPEG at quality 75).
//!
//! Usage: kind_eval eval DIR | kind_eval scan IN_DIR OUT_DIR

use std::collections::BTreeMap;
use std::path::Path;

use helpdesk::vision::{pipeline::Pipeline, Vision};
use image::{GrayImage, Luma};

const KINDS: [&str; 4] = ["screenshot", "document", "hardware", "photo"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("eval") if args.len() == 2 => eval(Path::new(&args[1])),
        Some("scan") if args.len() == 3 => scan_all(Path::new(&args[1]), Path::new(&args[2])),
        _ => anyhow::bail!("usage: kind_eval eval DIR | kind_eval scan IN_DIR OUT_DIR"),
    }
}

fn eval(dir: &Path) -> anyhow::Result<()> {
    let vision = Vision::new(Path::new("models"), Pipeline::builtin());
    vision.cnn().map_err(anyhow::Error::msg)?;
    let mut confusion: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut right, mut all) = (0usize, 0usize);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for truth in KINDS {
        let sub = dir.join(truth);
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f)?;
            let r = match vision.analyze("eval", &bytes) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e}", f.display());
                    continue;
                }
            };
            let k = r
                .kind
                .ok_or_else(|| anyhow::anyhow!("no kind: {:?}", r.skipped))?;
            let top = k
                .imagenet
                .first()
                .map(|c| c.label.clone())
                .unwrap_or_default();
            eprintln!(
                "{:<11} {:<11} flat {:.2} top {:<24} {}",
                truth,
                k.kind,
                k.flat_share,
                top,
                f.file_name().unwrap_or_default().to_string_lossy()
            );
            all += 1;
            right += usize::from(k.kind == truth);
            *counts.entry(truth).or_default() += 1;
            *confusion
                .entry(truth)
                .or_default()
                .entry(k.kind.clone())
                .or_default() += 1;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "images": all,
            "per_kind": counts,
            "accuracy": right as f64 / all.max(1) as f64,
            "confusion": confusion,
        })
    );
    Ok(())
}

fn scan_all(input: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut files: Vec<_> = std::fs::read_dir(input)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let img = image::open(f)?.to_luma8();
        // Skews of −1.5° to 1.5°, one per page.
        let angle = (i as f64 * 0.37).sin() * 1.5;
        let scanned = scan(&img, angle.to_radians(), &mut seed);
        let name = f.file_stem().unwrap_or_default().to_string_lossy();
        let mut w = std::fs::File::create(out.join(format!("scan_{name}.jpg")))?;
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, 75).encode_image(&scanned)?;
    }
    Ok(())
}

fn scan(img: &GrayImage, angle: f64, seed: &mut u64) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    let (c, s) = (angle.cos(), angle.sin());
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let mut rng = move || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % 1000) as f64 / 1000.0
    };
    let rotated = GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx >= f64::from(w) || sy >= f64::from(h) {
            Luma([200])
        } else {
            *img.get_pixel(sx as u32, sy as u32)
        }
    });
    let blurred = image::imageops::blur(&rotated, 0.8);
    GrayImage::from_fn(w, h, |x, y| {
        let v = f64::from(blurred.get_pixel(x, y)[0]);
        // Paper is not white; toner is not black; the sensor adds noise.
        let paper = 28.0 + 214.0 * v / 255.0;
        let noise = (rng() + rng() + rng() - 1.5) * 14.0;
        Luma([(paper + noise).clamp(0.0, 255.0) as u8])
    })
}
