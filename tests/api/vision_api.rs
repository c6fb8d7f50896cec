//! `POST /v1/attachments/analyze` over HTTP: a report for a real image,
//! a clear 4xx for bad or hostile files.

use std::io::Cursor;

use serde_json::Value;

use crate::helpers::{spawn_app, TestApp};

async fn analyze(app: &TestApp, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/v1/attachments/analyze", app.address))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn an_image_gets_a_report_and_bad_files_a_clear_4xx() {
    let app = spawn_app().await;
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(1920, 1080, |x, y| {
        image::Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            ((x / 8 + y / 8) % 2 * 255) as u8,
        ])
    }));
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (s, r) = analyze(&app, "image/png", png.clone()).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["format"].as_str(),
            r["width"].as_u64(),
            r["height"].as_u64()
        ),
        (Some("png"), Some(1920), Some(1080))
    );
    assert_eq!(r["exif"]["gps"], false);
    assert_eq!(r["quality"]["low_resolution"], false);
    assert_eq!(r["phash"].as_str().unwrap().len(), 16);
    for step in ["decode", "exif", "quality", "phash"] {
        assert!(r["timings_ms"][step].as_f64().unwrap() >= 0.0, "{step}");
    }
    // Not an image, empty, truncated: 422 with a JSON error.
    for body in [
        b"just text".to_vec(),
        Vec::new(),
        png[..png.len() / 3].to_vec(),
    ] {
        let (s, e) = analyze(&app, "application/octet-stream", body).await;
        assert_eq!(s, 422, "{e}");
        assert!(e["error"].as_str().is_some());
    }
    // Over the 20 MiB limit: 413.
    let (s, _) = analyze(&app, "image/png", vec![0u8; 21 * 1024 * 1024]).await;
    assert_eq!(s, 413);
    // The service is still up.
    assert_eq!(app.get("/health").await.status(), 200);
}

fn fixture(path: &str) -> Vec<u8> {
    let p = crate::helpers::repo_path("tests/fixtures").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test]
async fn ocr_reads_tesseracts_test_page_with_at_least_95_percent_of_the_words() {
    // tesseract's own phototest.tif and its ground truth (Apache-2.0).
    let app = spawn_app().await;
    let (s, r) = analyze(&app, "image/tiff", fixture("phototest.tif")).await;
    assert_eq!(s, 200, "{r}");
    assert!(
        r["skipped"].as_object().unwrap().is_empty(),
        "{}",
        r["skipped"]
    );
    let got = r["ocr"]["text"].as_str().unwrap();
    let truth = String::from_utf8(fixture("phototest.txt")).unwrap();
    let acc = helpdesk::vision::ocr::word_accuracy(got, &truth);
    assert!(acc >= 0.95, "word accuracy {acc:.3}:\n{got}");
    assert!(
        r["ocr"]["engine"]
            .as_str()
            .unwrap()
            .starts_with("tesseract 5"),
        "{}",
        r["ocr"]
    );
    assert_eq!(r["ocr"]["usable"], true);
    assert!(r["timings_ms"]["ocr"].as_f64().unwrap() > 0.0);
    assert!(
        r["pii"]["findings"].as_array().unwrap().is_empty(),
        "{}",
        r["pii"]
    );
}

#[tokio::test]
async fn a_screenshot_is_read_and_its_personal_data_flagged_and_redacted() {
    // A billing page rendered by headless Chromium (scripts/make-vision-fixtures.sh).
    let app = spawn_app().await;
    let (s, r) = analyze(&app, "image/png", fixture("screenshots/payment_error.png")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["kind"]["kind"], "screenshot", "{}", r["kind"]);
    let text = r["ocr"]["text"].as_str().unwrap();
    assert!(text.contains("Payment declined"), "{text}");
    let findings = r["pii"]["findings"].as_array().unwrap();
    let mut kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["card", "email", "iban", "phone"], "{}", r["pii"]);
    // Positions point into the OCR text; the redacted copy has none of it.
    let redacted = r["pii"]["redacted"].as_str().unwrap();
    for f in findings {
        let (a, b) = (
            f["start"].as_u64().unwrap() as usize,
            f["end"].as_u64().unwrap() as usize,
        );
        let value = &text[a..b];
        assert!(!redacted.contains(value), "{value} left in {redacted}");
        assert!(!f["hint"].as_str().unwrap().contains(value));
    }
    assert!(redacted.contains("[CARD]") && redacted.contains("Payment declined"));
}

#[tokio::test]
async fn the_classifier_names_a_photo_a_photo_and_a_dialog_a_screenshot() {
    // chelsea.png: scikit-image's cat photo (CC0, Stefan van der Walt).
    let app = spawn_app().await;
    let (s, r) = analyze(&app, "image/png", fixture("photos/chelsea.png")).await;
    assert_eq!(s, 200, "{r}");
    let k = &r["kind"];
    assert_eq!(k["kind"], "photo", "{k}");
    let top = k["imagenet"][0]["label"].as_str().unwrap();
    assert!(
        ["tabby", "tiger cat", "Egyptian cat"].contains(&top),
        "top class {top}: {k}"
    );
    assert!(
        k["imagenet"][0]["probability"].as_f64().unwrap() > 0.3,
        "{k}"
    );
    // A 1080p ticket list (a "menu" to ImageNet) is a screenshot too.
    let (s, r) = analyze(
        &app,
        "image/png",
        fixture("screenshots/ticket_list_1080p.png"),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["kind"]["kind"], "screenshot", "{}", r["kind"]);
    assert!(
        r["ocr"]["text"].as_str().unwrap().contains("0x80070005"),
        "{}",
        r["ocr"]
    );
    let (s, r) = analyze(&app, "image/png", fixture("screenshots/ora_error.png")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["kind"]["kind"], "screenshot", "{}", r["kind"]);
    assert!(
        r["ocr"]["text"].as_str().unwrap().contains("ORA-12154"),
        "{}",
        r["ocr"]
    );
}

#[tokio::test]
async fn barcodes_on_an_asset_label_are_read() {
    let app = spawn_app().await;
    let qr =
        helpdesk::vision::barcode::render("ASSET-000123", rxing::BarcodeFormat::QR_CODE, 240, 240);
    let bar =
        helpdesk::vision::barcode::render("SN-7XK2-9941", rxing::BarcodeFormat::CODE_128, 420, 120);
    let mut label = image::GrayImage::from_pixel(900, 420, image::Luma([250]));
    image::imageops::replace(&mut label, &qr, 30, 30);
    image::imageops::replace(&mut label, &bar, 380, 150);
    // As photographed (sensor noise): labels are photos, and the pipeline
    // scans photos, documents and hardware for codes, not screenshots.
    let label = helpdesk::vision::testdata::photographed(&label);
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(label)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (s, r) = analyze(&app, "image/png", png).await;
    assert_ne!(r["kind"]["kind"], "screenshot", "{}", r["kind"]);
    assert_eq!(s, 200, "{r}");
    let codes: Vec<String> = r["barcodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}:{}",
                b["format"].as_str().unwrap(),
                b["text"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        codes.contains(&"qr_code:ASSET-000123".to_string()),
        "{codes:?}"
    );
    assert!(
        codes.contains(&"code_128:SN-7XK2-9941".to_string()),
        "{codes:?}"
    );
}

#[tokio::test]
async fn hostile_files_get_a_4xx_and_the_service_stays_up() {
    // The fuzz corpus (bombs, truncations, wrong magic, empty) over HTTP.
    let app = spawn_app().await;
    // The hand-made seeds, and every 8th input the fuzzer kept.
    let dir = crate::helpers::repo_path("fuzz/seeds/decode");
    let kept = crate::helpers::repo_path("fuzz/corpus/decode");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(&kept).unwrap())
        .map(|e| e.unwrap())
        .collect();
    files.sort_by_key(|e| e.file_name());
    let seeds = files.iter().filter(|e| e.path().starts_with(&dir)).count();
    assert!(seeds >= 10 && files.len() > 1000, "{} inputs", files.len());
    for (i, entry) in files.into_iter().enumerate() {
        if !entry.path().starts_with(&dir) && i % 8 != 0 {
            continue;
        }
        let path = entry.path();
        let body = std::fs::read(&path).unwrap();
        let (s, r) = analyze(&app, "application/octet-stream", body).await;
        assert!(
            s == 200 || s == 413 || s == 422,
            "{}: {s} {r}",
            path.display()
        );
        if s != 200 {
            assert!(r["error"].as_str().is_some(), "{r}");
        }
    }
    for bomb in ["png_bomb_header", "gif_bomb_header"] {
        let (s, r) = analyze(&app, "image/png", std::fs::read(dir.join(bomb)).unwrap()).await;
        assert_eq!(s, 422, "{bomb}: {r}");
        assert!(r["error"].as_str().unwrap().contains("pixels"), "{r}");
    }
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn a_multipart_upload_is_checked_like_raw_bytes() {
    let app = spawn_app().await;
    let png = fixture("screenshots/ora_error.png");
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
          --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"error.png\"\r\n\
          Content-Type: image/png\r\n\r\n",
    );
    body.extend_from_slice(&png);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let (s, r) = analyze(&app, "multipart/form-data; boundary=XyZ", body).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["width"].as_u64(), r["bytes"].as_u64()),
        (Some(900), Some(png.len() as u64))
    );
    assert!(r["ocr"]["text"].as_str().unwrap().contains("ORA-12154"));
    // No file part, or no boundary: a clear 4xx.
    let (s, e) = analyze(
        &app,
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n".to_vec(),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = analyze(&app, "multipart/form-data", png).await;
    assert_eq!(s, 400, "{e}");
}

/// Square crops of a fixture image at several places and sizes, as PNGs.
fn crops(path: &str, n: u32) -> Vec<Vec<u8>> {
    let img = image::load_from_memory(&fixture(path)).unwrap();
    let (w, h) = (img.width(), img.height());
    (0..n)
        .map(|i| {
            let side = w.min(h) * (5 + i % 4) / 9;
            let x = (w - side) * (i % 3) / 2;
            let y = (h - side) * (i / 3 % 3) / 2;
            let mut png = Vec::new();
            img.crop_imm(x, y, side, side)
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            png
        })
        .collect()
}

/// An image head: trained by `helpdesk train --images` on labelled images'
/// embeddings, run on every checked image of the tenants whose pipeline
/// names it, refused where text is classified.
#[tokio::test]
async fn an_image_head_trained_on_labelled_images_answers_in_the_attachment_report() {
    crate::helpers::require_model();
    let data = crate::helpers::data_dir();
    let images = data.path().join("labelled");
    for (label, sources) in [
        ("photo", vec!["photos/chelsea.png"]),
        (
            "screen",
            vec![
                "screenshots/ticket_list_1080p.png",
                "screenshots/payment_error.png",
            ],
        ),
    ] {
        let dir = images.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = 0;
        for source in sources {
            for png in crops(source, 8) {
                std::fs::write(dir.join(format!("{n:02}.png")), png).unwrap();
                n += 1;
            }
        }
    }
    let cli = |args: &[&str]| crate::helpers::cli_json(data.path(), args);
    let dir = images.to_str().unwrap();
    let trained = cli(&[
        "train", "--task", "shot", "--images", dir, "--tenant", "acme",
    ]);
    assert_eq!(trained["version"], 1, "{trained}");
    assert_eq!(trained["promoted"], true, "{trained}");
    assert_eq!(trained["lexical_weight"], 0.0, "{trained}");
    assert!(
        trained["metrics"]["accuracy"].as_f64().unwrap() >= 0.8,
        "held-out crops: {trained}"
    );
    let listed = cli(&["heads", "list", "--task", "shot", "--tenant", "acme"]);
    let card = &listed["versions"][0];
    assert!(
        card["encoder"]
            .as_str()
            .unwrap()
            .starts_with("efficientnet-lite0@"),
        "{card}"
    );
    assert_eq!(card["dims"], 1280);
    let eval = cli(&[
        "eval", "--task", "shot", "--images", dir, "--tenant", "acme",
    ]);
    assert!(
        eval["metrics"]["accuracy"].as_f64().unwrap() >= 0.9,
        "{eval}"
    );

    // The service runs it for acme (its pipeline names the head), not for
    // globex, on images it never saw.
    let pipeline = data.path().join("checks.toml");
    std::fs::write(
        &pipeline,
        helpdesk::vision::pipeline::DEFAULT_TOML.to_string()
            + "\n[tenants.\"acme\".kind]\nheads = [\"shot\"]\n",
    )
    .unwrap();
    let mut settings = crate::helpers::test_settings();
    settings.data_dir = data.path().to_path_buf();
    settings.vision.pipeline = Some(pipeline);
    let app = crate::helpers::spawn_app_with(settings, true).await;
    let check = |tenant: &'static str, path: &'static str| {
        let app = &app;
        let ctype = if path.ends_with(".tif") {
            "image/tiff"
        } else {
            "image/png"
        };
        async move {
            let r = app
                .client
                .post(format!("{}/v1/attachments/analyze", app.address))
                .header("x-tenant-id", tenant)
                .header("content-type", ctype)
                .body(fixture(path))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let r = check("acme", "screenshots/ora_error.png").await;
    assert_eq!(r["heads"]["shot"]["top"], "screen", "{}", r["heads"]);
    assert_eq!(r["heads"]["shot"]["version"], 1);
    let p = &r["heads"]["shot"]["probabilities"];
    assert_eq!(p.as_array().unwrap().len(), 2, "{p}");
    assert!(r["heads"]["shot"]["evidence"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("screen/"));
    let r = check("globex", "screenshots/ora_error.png").await;
    assert!(r.get("heads").is_none(), "not globex's: {r}");
    let r = check("acme", "phototest.tif").await;
    assert!(r["heads"]["shot"]["top"].is_string(), "{r}");

    // Text is not what it reads.
    let r = app
        .post_as(
            "acme",
            "/v1/classify",
            &serde_json::json!({ "inputs": "my laptop screen is broken", "task": "shot" }),
        )
        .await;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("reads images"), "{e}");
}
