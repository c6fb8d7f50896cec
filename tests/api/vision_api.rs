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
