//! Per-step time of the image checks (`vision::analyze`) on a 1920×1080 PNG
//! screenshot-like image and a 12-megapixel JPEG photo-like image, both made
//! in code, a real 1920×1080 screenshot (a ticket list rendered by headless
//! Chromium: tests/fixtures/screenshots/ticket_list_1080p.png), and
//! tesseract's own test page (`scripts/bench-vision.sh`). One
//! thread, as the service runs a check (RAYON_NUM_THREADS=1 in the script).
//! Prints one JSON line per image: p50/p99 per step, in total, and in total
//! without OCR (the goal leaves OCR out).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Instant;

use helpdesk::vision::{pipeline::Pipeline, Vision};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn screenshot() -> Vec<u8> {
    // A window: title bar, a dialog, rows of "text" strokes on white.
    let img = RgbImage::from_fn(1920, 1080, |x, y| {
        if y < 40 {
            return Rgb([45, 60, 90]);
        }
        let in_dialog = (660..1260).contains(&x) && (380..700).contains(&y);
        let row = (y / 24) % 2 == 0 && (y % 24) < 12;
        let glyph = (x / 7 + y / 24) % 5 != 0 && (x % 7) < 5;
        match (in_dialog, row && glyph) {
            (true, true) => Rgb([20, 20, 20]),
            (true, false) => Rgb([236, 236, 240]),
            (false, true) => Rgb([60, 60, 60]),
            (false, false) => Rgb([255, 255, 255]),
        }
    });
    encode(DynamicImage::ImageRgb8(img), ImageFormat::Png)
}

fn photo() -> Vec<u8> {
    // 4000×3000: smooth light, an object, sensor-like noise.
    let mut seed = 0x2545F4914F6CDD1Du64;
    let img = RgbImage::from_fn(4000, 3000, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 24) as f32 - 12.0;
        let (u, v) = (x as f32 / 4000.0, y as f32 / 3000.0);
        let object = ((u - 0.5).powi(2) + (v - 0.55).powi(2)) < 0.06;
        let base = if object {
            70.0
        } else {
            150.0 + 60.0 * u - 40.0 * v
        };
        let c = |k: f32| (base * k + n).clamp(0.0, 255.0) as u8;
        Rgb([c(1.0), c(0.95), c(0.85)])
    });
    encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
}

fn encode(img: DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), f).unwrap();
    out
}

fn q(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let vision = Vision::new(std::path::Path::new("models"), Pipeline::builtin());
    for (name, bytes) in [
        ("screenshot_1920x1080_png", screenshot()),
        (
            "screenshot_1920x1080_chromium_png",
            std::fs::read("tests/fixtures/screenshots/ticket_list_1080p.png")
                .expect("tests/fixtures/screenshots/ticket_list_1080p.png"),
        ),
        ("photo_12mp_jpeg", photo()),
        (
            "phototest_tif",
            std::fs::read("tests/fixtures/phototest.tif").expect("tests/fixtures/phototest.tif"),
        ),
    ] {
        let mut steps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for i in 0..runs + 2 {
            let t = Instant::now();
            let r = vision.analyze("bench", &bytes).expect("analyze");
            let total = t.elapsed().as_secs_f64() * 1e3;
            // Steps the pipeline leaves out for this kind are fine; a step
            // off or unavailable (no model, no tesseract) is not measured.
            assert!(
                r.skipped.values().all(|why| why.starts_with("not run on")),
                "every step must be able to run: {:?}",
                r.skipped
            );
            if i < 2 {
                continue; // warm-up
            }
            let ocr = r.timings_ms.get("ocr").copied().unwrap_or(0.0);
            steps
                .entry("total_without_ocr")
                .or_default()
                .push(total - ocr);
            for (k, v) in r.timings_ms {
                steps.entry(k).or_default().push(v);
            }
            steps.entry("total").or_default().push(total);
        }
        // OCR word accuracy where the ground truth is known (tesseract's page).
        let accuracy = (name == "phototest_tif").then(|| {
            let truth = std::fs::read_to_string("tests/fixtures/phototest.txt").expect("truth");
            let r = vision.analyze("bench", &bytes).expect("analyze");
            let text = r.ocr.map(|o| o.result.text).unwrap_or_default();
            helpdesk::vision::ocr::word_accuracy(&text, &truth)
        });
        let figures: BTreeMap<&str, (f64, f64)> = steps
            .iter_mut()
            .map(|(k, v)| (*k, (q(v, 0.5), q(v, 0.99))))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "image": name, "bytes": bytes.len(), "runs": runs,
                "p50_p99_ms": figures, "ocr_word_accuracy": accuracy })
        );
    }
}
