//! What kind of picture an attachment is — screenshot, document, hardware
//! (with its type) or other photo — from EfficientNet-Lite0's ImageNet
//! classes, summed per helpdesk kind, and one pixel statistic: a screenshot
//! is mostly runs of identical pixels, which a camera's noise never makes.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::effnet::{class_names, Output};

/// ImageNet classes (by name) that mean each hardware type.
const HARDWARE: &[(&str, &[&str])] = &[
    ("laptop", &["laptop", "notebook", "hand-held computer"]),
    ("desktop", &["desktop computer"]),
    ("monitor", &["monitor", "screen", "television"]),
    (
        "keyboard",
        &["computer keyboard", "typewriter keyboard", "space bar"],
    ),
    ("mouse", &["mouse"]),
    ("printer", &["printer", "photocopier"]),
    (
        "phone",
        &["cellular telephone", "dial telephone", "pay-phone", "iPod"],
    ),
    ("projector", &["projector"]),
    ("network", &["modem", "switch"]),
    ("storage", &["hard disc"]),
    (
        "peripheral",
        &[
            "remote control",
            "joystick",
            "loudspeaker",
            "microphone",
            "tape player",
            "cassette player",
            "CD player",
        ],
    ),
];

/// Classes that mean a document (paper, print) or a screen capture.
const DOCUMENT: &[&str] = &[
    "envelope",
    "book jacket",
    "menu",
    "crossword puzzle",
    "binder",
    "comic book",
    "packet",
];
const SCREENSHOT: &[&str] = &["web site"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassScore {
    pub label: String,
    pub probability: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KindReport {
    /// screenshot, document, hardware or photo.
    pub kind: String,
    /// laptop, monitor, keyboard, printer, phone, … when `kind` is hardware.
    pub hardware_type: Option<String>,
    /// The probability mass behind `kind` (1.0 when the pixels decided).
    pub confidence: f32,
    /// What decided: the flat pixels, grey paper, the classifier, or the
    /// text OCR found (a photographed page).
    pub decided_by: String,
    /// Probability mass per kind, from the classifier alone.
    pub scores: std::collections::BTreeMap<String, f32>,
    /// Share of identical horizontal neighbours (screenshots: high).
    pub flat_share: f64,
    /// The classifier's five most probable ImageNet classes.
    pub imagenet: Vec<ClassScore>,
    /// The 1280-d penultimate features (when the pipeline asks for them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// Share of horizontally adjacent pixel pairs with the same RGB value, on
/// every 4th row.
pub fn flat_share(img: &RgbImage) -> f64 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 2 {
        return 0.0;
    }
    let raw = img.as_raw();
    let (mut same, mut all) = (0u64, 0u64);
    for y in (0..h).step_by(4) {
        let row = &raw[y * w * 3..(y + 1) * w * 3];
        for x in 0..w - 1 {
            all += 1;
            if row[x * 3..x * 3 + 3] == row[x * 3 + 3..x * 3 + 6] {
                same += 1;
            }
        }
    }
    same as f64 / all.max(1) as f64
}

fn index_of(name: &str) -> Option<usize> {
    class_names().iter().position(|n| *n == name)
}

/// The kind from the classifier's output and the flat share. `grey`: the
/// file itself is greyscale or bilevel, which scanners and fax make and
/// screen captures do not; `light`: its mean luminance is paper's. Flat grey
/// paper is a clean scan; a flat grey dark image (the night sky, a
/// micrograph) is left to the classifier.
pub fn decide(
    out: &Output,
    flat: f64,
    grey: bool,
    light: bool,
    screenshot_flat_share: f64,
    embedding: bool,
) -> KindReport {
    let p = |names: &[&str]| -> f32 {
        names
            .iter()
            .filter_map(|n| index_of(n))
            .map(|i| out.probs[i])
            .sum()
    };
    let mut hw: Vec<(&str, f32)> = HARDWARE.iter().map(|(t, names)| (*t, p(names))).collect();
    hw.sort_by(|a, b| b.1.total_cmp(&a.1));
    let hardware: f32 = hw.iter().map(|h| h.1).sum();
    let document = p(DOCUMENT);
    let screenshot = p(SCREENSHOT);
    let photo = (1.0 - hardware - document - screenshot).max(0.0);
    let scores: std::collections::BTreeMap<String, f32> = [
        ("hardware", hardware),
        ("document", document),
        ("screenshot", screenshot),
        ("photo", photo),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The classifier knows photos of things; ImageNet has little that looks
    // like a screen capture, so the pixels decide that one.
    let (kind, confidence, decided_by) = if flat >= screenshot_flat_share && grey && light {
        ("document", 1.0, "flat grey paper: a clean scan")
    } else if flat >= screenshot_flat_share && !grey {
        // Whatever it shows (a table reads as a "menu" to ImageNet), a flat
        // colour image is a screen capture: scans are grey or noisy.
        ("screenshot", 1.0, "flat pixels: a screen capture")
    } else {
        // Not flat: a camera or a scanner made it, so "web site" means a
        // page seen through one — a document. A kind named by ImageNet
        // classes wins over "photo" (everything else) when it holds a fair
        // share of the mass: the other 990 classes spread the rest thinly.
        let page = if flat >= screenshot_flat_share && !grey {
            document
        } else {
            document + screenshot
        };
        let named = [("hardware", hardware), ("document", page)];
        let best = named
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or(("photo", 0.0));
        if best.1 >= 0.25 {
            (best.0, best.1, "classifier")
        } else {
            ("photo", photo, "classifier")
        }
    };
    let mut top: Vec<(usize, f32)> = out.probs.iter().copied().enumerate().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    KindReport {
        kind: kind.to_string(),
        hardware_type: (kind == "hardware").then(|| hw[0].0.to_string()),
        confidence,
        decided_by: decided_by.to_string(),
        scores,
        flat_share: flat,
        imagenet: top
            .iter()
            .take(5)
            .map(|&(i, pr)| ClassScore {
                label: class_names()[i].to_string(),
                probability: pr,
            })
            .collect(),
        embedding: embedding.then(|| out.features.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_with(mass: &[(&str, f32)]) -> Output {
        let mut probs = vec![0.0; 1000];
        let rest = 1.0 - mass.iter().map(|m| m.1).sum::<f32>();
        for p in probs.iter_mut() {
            *p = rest / 1000.0;
        }
        for (n, v) in mass {
            probs[index_of(n).unwrap()] += v;
        }
        Output {
            probs,
            features: vec![0.5; 1280],
        }
    }

    #[test]
    fn every_mapped_class_name_exists() {
        for (_, names) in HARDWARE {
            for n in *names {
                assert!(index_of(n).is_some(), "{n}");
            }
        }
        for n in DOCUMENT.iter().chain(SCREENSHOT) {
            assert!(index_of(n).is_some(), "{n}");
        }
    }

    /// The kind of an image whose classifier output has `mass` on those
    /// classes, with the given flat share and grey/light flags.
    fn kind_of(mass: &[(&str, f32)], flat: f64, grey: bool, light: bool) -> KindReport {
        decide(&output_with(mass), flat, grey, light, 0.45, false)
    }

    #[test]
    fn hardware_type_document_and_photo_follow_the_class_mass() {
        // A camera's "web site" is a page: a document, not a screenshot.
        assert_eq!(
            kind_of(&[("web site", 0.5)], 0.05, false, false).kind,
            "document"
        );
        let r = kind_of(&[("laptop", 0.5), ("notebook", 0.2)], 0.05, false, false);
        assert_eq!(
            (r.kind.as_str(), r.hardware_type.as_deref()),
            ("hardware", Some("laptop"))
        );
        assert!(r.confidence > 0.69);
        assert_eq!(r.imagenet[0].label, "laptop");
        assert_eq!(
            kind_of(&[("envelope", 0.4)], 0.1, false, false).kind,
            "document"
        );
        let r = decide(
            &output_with(&[("tabby", 0.6)]),
            0.02,
            false,
            false,
            0.45,
            true,
        );
        assert_eq!((r.kind.as_str(), r.hardware_type), ("photo", None));
        assert_eq!(r.embedding.map(|e| e.len()), Some(1280));
    }

    #[test]
    fn flat_colour_pixels_make_a_screenshot_and_flat_grey_paper_a_scan() {
        assert_eq!(
            kind_of(&[("monitor", 0.6)], 0.8, false, false).kind,
            "screenshot"
        );
        // A table of tickets is a "menu" to ImageNet; flat colour still wins.
        assert_eq!(
            kind_of(&[("menu", 0.7)], 0.8, false, false).kind,
            "screenshot"
        );
        // Flat, grey and light: a clean scan, not a screen; flat, grey and
        // dark (the night sky): the classifier's call.
        assert_eq!(
            kind_of(&[("monitor", 0.6)], 0.8, true, true).kind,
            "document"
        );
        let r = kind_of(&[("nematode", 0.6)], 0.8, true, false);
        assert_eq!(
            (r.kind.as_str(), r.decided_by.as_str()),
            ("photo", "classifier")
        );
    }

    #[test]
    fn flat_share_tells_synthetic_flat_from_noisy() {
        let flat = RgbImage::from_pixel(100, 40, image::Rgb([240, 240, 240]));
        assert_eq!(flat_share(&flat), 1.0);
        let noisy = RgbImage::from_fn(100, 40, |x, y| {
            let v = ((x * 7919 + y * 104_729) % 251) as u8;
            image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(17)])
        });
        assert!(flat_share(&noisy) < 0.05);
    }
}
