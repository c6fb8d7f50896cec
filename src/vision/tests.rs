use super::testdata::{card, jpeg_with_gps};
use super::*;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

fn encode(img: &DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), f).unwrap();
    out
}

#[test]
fn every_supported_format_decodes_and_others_are_refused() {
    let img = card(64, 48);
    for f in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ] {
        let (d, got) = decode(&encode(&img, f), DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert_eq!((got, d.width(), d.height()), (f, 64, 48));
    }
    assert_eq!(
        decode(b"", DecodeLimits::default()).unwrap_err(),
        VisionError::Empty
    );
    assert_eq!(
        decode(b"hello, this is not a picture", DecodeLimits::default()).unwrap_err(),
        VisionError::Unsupported
    );
    let png = encode(&img, ImageFormat::Png);
    let small = DecodeLimits {
        max_bytes: 100,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode(&png, small),
        Err(VisionError::TooLarge(_, 100))
    ));
}

#[test]
fn truncated_and_lying_files_are_refused_without_decoding_bombs() {
    let png = encode(&card(200, 200), ImageFormat::Png);
    let cut = &png[..png.len() / 2];
    assert!(matches!(
        decode(cut, DecodeLimits::default()),
        Err(VisionError::Corrupt(_))
    ));
    // A PNG header that claims 100,000 × 100,000 pixels (40 GB decoded):
    // refused from the header, before any pixel buffer exists.
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    // Fix the IHDR CRC so only the size is a lie.
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode(&bomb, DecodeLimits::default()),
        Err(VisionError::TooManyPixels {
            w: 100_000,
            h: 100_000,
            ..
        })
    ));
    // Magic of one format, body of nothing.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend_from_slice(&[0; 40]);
    assert!(decode(&fake, DecodeLimits::default()).is_err());
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn quality_flags_blur_and_exposure() {
    let sharp = card(640, 480);
    let q = quality(&sharp, QualityThresholds::default());
    assert!(
        !q.blurry && !q.underexposed && !q.overexposed && !q.low_resolution,
        "{q:?}"
    );
    let blurred = DynamicImage::ImageRgb8(image::imageops::blur(&sharp.to_rgb8(), 6.0));
    let b = quality(&blurred, QualityThresholds::default());
    assert!(
        b.blur_variance < q.blur_variance / 10.0,
        "{} vs {}",
        b.blur_variance,
        q.blur_variance
    );
    assert!(b.blurry);
    let dark = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(800, 600, Luma([12u8])));
    let d = quality(&dark, QualityThresholds::default());
    assert!(d.underexposed && !d.overexposed);
    let white = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(300, 200, Luma([255u8])));
    let w = quality(&white, QualityThresholds::default());
    assert!(w.overexposed && w.low_resolution && w.clipped_bright > 0.99);
}

#[test]
fn the_perceptual_hash_matches_resized_copies_and_tells_images_apart() {
    // Large smooth shapes (a checkerboard of 8 px would alias at 32×32).
    let a = DynamicImage::ImageRgb8(RgbImage::from_fn(640, 480, |x, y| {
        let (u, v) = (x as f32 / 640.0, y as f32 / 480.0);
        let disc = ((u - 0.3).powi(2) + (v - 0.5).powi(2)) < 0.04;
        let bar = (0.6..0.8).contains(&u) && v > 0.2;
        let g = (u * 200.0) as u8;
        if disc || bar {
            Rgb([230, 230, 230])
        } else {
            Rgb([g, 40, 90])
        }
    }));
    let a_small = a.resize_exact(320, 240, image::imageops::FilterType::Triangle);
    let a_jpeg = decode(&encode(&a, ImageFormat::Jpeg), DecodeLimits::default())
        .unwrap()
        .0;
    let b = DynamicImage::ImageRgb8(RgbImage::from_fn(640, 480, |x, y| {
        let v = ((x as f32 / 40.0).sin() * (y as f32 / 25.0).cos() * 120.0 + 128.0) as u8;
        Rgb([v, 255 - v, v / 2])
    }));
    let (ha, hs, hj, hb) = (phash(&a), phash(&a_small), phash(&a_jpeg), phash(&b));
    assert!(hamming(ha, hs) <= 6, "resized: {}", hamming(ha, hs));
    assert!(hamming(ha, hj) <= 6, "re-encoded: {}", hamming(ha, hj));
    assert!(hamming(ha, hb) >= 20, "different: {}", hamming(ha, hb));
}

#[test]
fn exif_is_reported_with_gps_and_the_stored_copy_has_none() {
    let jpeg = jpeg_with_gps();
    let r = exif_report(&jpeg);
    assert!(r.gps, "{r:?}");
    assert!(r.removed.iter().any(|t| t == "Model"), "{r:?}");
    assert!(r.removed.iter().any(|t| t == "GPSLatitudeRef"), "{r:?}");
    let (img, _) = decode(&jpeg, DecodeLimits::default()).unwrap();
    let clean = stripped_png(&img).unwrap();
    let again = exif_report(&clean);
    assert!(again.removed.is_empty() && !again.gps, "{again:?}");
    assert_eq!(
        decode(&clean, DecodeLimits::default()).unwrap().0.width(),
        64
    );
    // Without EXIF: nothing to report.
    assert!(exif_report(&encode(&card(8, 8), ImageFormat::Png))
        .removed
        .is_empty());
}

/// The checks with the shipped pipeline and the fetched models.
fn vision() -> Vision {
    Vision::new(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
        pipeline::Pipeline::builtin(),
    )
}

#[test]
fn the_report_has_every_step_with_its_time() {
    // Needs models/efficientnet-lite0 and libtesseract (scripts/test.sh
    // fetches and installs them): a missing one fails here, by name.
    let r = vision().analyze("t", &jpeg_with_gps()).unwrap();
    assert_eq!((r.format.as_str(), r.width, r.height), ("jpeg", 64, 64));
    assert_eq!(r.phash.as_ref().map(String::len), Some(16));
    assert!(r.skipped.is_empty(), "every step on: {:?}", r.skipped);
    for step in [
        "decode", "exif", "quality", "phash", "kind", "ocr", "barcodes", "pii",
    ] {
        assert!(r.timings_ms.contains_key(step), "{step}");
    }
    assert!(r.exif.as_ref().unwrap().gps);
    assert!(
        r.exif_removed.iter().any(|t| t.starts_with("GPS")),
        "{:?}",
        r.exif_removed
    );
}

#[test]
fn steps_a_tenant_turned_off_do_not_run_and_say_so() {
    let text = format!(
        "{}\n[tenants.\"quiet\".ocr]\nenabled = false\n[tenants.\"quiet\".kind]\nenabled = false\n",
        pipeline::DEFAULT_TOML
    );
    let v = Vision::new(
        Path::new("/nonexistent"),
        pipeline::Pipeline::parse(&text).unwrap(),
    );
    let r = v.analyze("quiet", &jpeg_with_gps()).unwrap();
    assert!(r.ocr.is_none() && r.kind.is_none() && r.pii.is_none());
    assert_eq!(r.skipped["ocr"], "off in the tenant's pipeline");
    assert_eq!(r.skipped["kind"], "off in the tenant's pipeline");
    assert!(!r.timings_ms.contains_key("ocr"));
    // Another tenant on the same pipeline: the classifier is asked for, and
    // its absence (no models here) is reported, not hidden.
    let r = v.analyze("other", &jpeg_with_gps()).unwrap();
    assert!(
        r.skipped["kind"].starts_with("unavailable:"),
        "{:?}",
        r.skipped
    );
}

#[test]
fn metadata_is_stripped_losslessly_from_jpeg_and_png() {
    let jpeg = jpeg_with_gps();
    let clean = strip_metadata(&jpeg).unwrap();
    assert!(clean.len() < jpeg.len());
    assert!(exif_report(&clean).removed.is_empty());
    let (a, b) = (
        decode(&jpeg, DecodeLimits::default()).unwrap().0,
        decode(&clean, DecodeLimits::default()).unwrap().0,
    );
    assert_eq!(
        a.to_rgb8().into_raw(),
        b.to_rgb8().into_raw(),
        "same pixels"
    );
    // PNG: a text chunk goes, the pixels stay.
    let png = encode(&card(16, 16), ImageFormat::Png);
    let mut with_text = png[..33].to_vec(); // signature + IHDR
    let data = b"Comment\0secret";
    with_text.extend_from_slice(&(data.len() as u32).to_be_bytes());
    with_text.extend_from_slice(b"tEXt");
    with_text.extend_from_slice(data);
    let mut crc_in = b"tEXt".to_vec();
    crc_in.extend_from_slice(data);
    with_text.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    with_text.extend_from_slice(&png[33..]);
    assert!(decode(&with_text, DecodeLimits::default()).is_ok());
    let stripped = strip_metadata(&with_text).unwrap();
    assert_eq!(stripped, png);
    // Truncated: refused, not stored half-parsed.
    assert_eq!(strip_metadata(&jpeg[..40]), None);
    assert_eq!(strip_metadata(&png[..20]), None);
}

#[test]
fn the_fuzz_corpus_replays_without_a_panic_and_within_limits() {
    // fuzz/seeds/decode: hand-made bombs, truncations, wrong magic, empty;
    // fuzz/corpus/decode: what scripts/fuzz-decode.sh kept. Each input is an
    // image or a clear refusal; a decoded one respects the limits.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let limits = DecodeLimits {
        max_bytes: 1 << 20,
        max_pixels: 4_000_000,
        max_side: 4096,
        max_alloc: 64 << 20,
    };
    let (mut ok, mut refused) = (0, 0);
    for dir in ["seeds/decode", "corpus/decode"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("the fuzz corpus") {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            match decode(&bytes, limits) {
                Ok((img, _)) => {
                    ok += 1;
                    assert!(u64::from(img.width()) * u64::from(img.height()) <= limits.max_pixels);
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty(), "{}", path.display());
                }
            }
            let _ = exif_report(&bytes);
            if let Some(clean) = strip_metadata(&bytes) {
                assert!(clean.len() <= bytes.len(), "{}", path.display());
            }
        }
    }
    assert!(ok + refused >= 1000, "{ok} decoded, {refused} refused");
    assert!(ok >= 2 && refused >= 5, "{ok} decoded, {refused} refused");
    for name in ["png_bomb_header", "gif_bomb_header"] {
        let bytes = std::fs::read(root.join("seeds/decode").join(name)).unwrap();
        assert!(matches!(
            decode(&bytes, limits),
            Err(VisionError::TooManyPixels { .. })
        ));
    }
}
