//! Barcodes and QR codes (rxing, a port of ZXing) on the grayscale copy of
//! an image: asset tags and serial numbers on labels. Several codes in one
//! photo are all reported.

use image::GrayImage;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Barcode {
    /// `qr_code`, `code_128`, `ean_13`, `data_matrix`, …
    pub format: String,
    pub text: String,
}

/// Every code rxing finds in `gray` (trying harder: rotated and inverted
/// too). Images over `max_pixels` are halved first: labels stay readable
/// and a 12 MP photo does not cost seconds.
pub fn scan(gray: &GrayImage, max_pixels: u64) -> Vec<Barcode> {
    let mut g = std::borrow::Cow::Borrowed(gray);
    while u64::from(g.width()) * u64::from(g.height()) > max_pixels && g.width() > 64 {
        let (w, h) = (g.width() / 2, g.height() / 2);
        g = std::borrow::Cow::Owned(image::imageops::resize(
            g.as_ref(),
            w,
            h,
            image::imageops::FilterType::Triangle,
        ));
    }
    let (w, h) = (g.width(), g.height());
    if w < 8 || h < 8 {
        return Vec::new();
    }
    let mut hints = rxing::DecodeHints {
        TryHarder: Some(true),
        ..Default::default()
    };
    let found = rxing::helpers::detect_multiple_in_luma_with_hints(
        g.into_owned().into_raw(),
        w,
        h,
        &mut hints,
    )
    .unwrap_or_default();
    let mut out: Vec<Barcode> = found
        .iter()
        .map(|r| Barcode {
            format: format_name(r.getBarcodeFormat()),
            text: r.getText().to_string(),
        })
        .collect();
    out.sort_by(|a, b| (&a.format, &a.text).cmp(&(&b.format, &b.text)));
    out.dedup();
    out
}

fn format_name(f: &rxing::BarcodeFormat) -> String {
    // Debug is `QR_CODE`, `CODE_128`, …: lower-case it.
    format!("{f:?}").to_lowercase()
}

/// Draws `text` as a barcode of `format` (tests and benches: a real code,
/// made by rxing's encoder, on a white margin).
#[doc(hidden)]
pub fn render(text: &str, format: rxing::BarcodeFormat, width: u32, height: u32) -> GrayImage {
    use rxing::Writer;
    let m = rxing::MultiFormatWriter
        .encode(text, &format, width as i32, height as i32)
        .expect("encode a test barcode");
    let (mw, mh) = (m.getWidth(), m.getHeight());
    let margin = 40;
    let mut img = GrayImage::from_pixel(mw + 2 * margin, mh + 2 * margin, image::Luma([255]));
    for y in 0..mh {
        for x in 0..mw {
            if m.get(x, y) {
                img.put_pixel(x + margin, y + margin, image::Luma([0]));
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_qr_code_and_a_code_128_in_one_image() {
        let qr = render("ASSET-000123", rxing::BarcodeFormat::QR_CODE, 200, 200);
        let bar = render("SN-7XK2-9941", rxing::BarcodeFormat::CODE_128, 400, 120);
        let mut page = GrayImage::from_pixel(1000, 600, image::Luma([255]));
        image::imageops::replace(&mut page, &qr, 40, 40);
        image::imageops::replace(&mut page, &bar, 420, 300);
        let got = scan(&page, 4_000_000);
        let texts: Vec<(&str, &str)> = got
            .iter()
            .map(|b| (b.format.as_str(), b.text.as_str()))
            .collect();
        assert!(texts.contains(&("qr_code", "ASSET-000123")), "{got:?}");
        assert!(texts.contains(&("code_128", "SN-7XK2-9941")), "{got:?}");
    }

    #[test]
    fn a_page_without_codes_gives_none() {
        let mut page = GrayImage::from_pixel(400, 300, image::Luma([240]));
        for y in 100..110 {
            for x in 50..350 {
                page.put_pixel(x, y, image::Luma([20]));
            }
        }
        assert_eq!(scan(&page, 4_000_000), vec![]);
    }
}
