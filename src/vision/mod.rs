//! Attachment image checks (issue 6, first steps): safe decoding with
//! limits, EXIF privacy report (the stored copy is re-encoded without any
//! metadata), quality (blur, exposure, resolution) and a perceptual hash.
//! The CNN image kind, OCR, barcodes and PII are later steps of the issue.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Instant;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, Limits};
use serde::Serialize;

/// What an upload may cost before it is refused.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    /// Width × height.
    pub max_pixels: u64,
    pub max_side: u32,
    /// What the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_side: 20_000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VisionError {
    #[error("the file is empty")]
    Empty,
    #[error("{0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)")]
    Unsupported,
    #[error("{w}×{h} pixels is over the limit ({max_pixels} pixels, {max_side} a side)")]
    TooManyPixels {
        w: u32,
        h: u32,
        max_pixels: u64,
        max_side: u32,
    },
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
}

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

#[derive(Debug, Clone, Serialize)]
pub struct ExifReport {
    /// Every EXIF tag found (all are dropped from the stored copy).
    pub removed: Vec<String>,
    /// A GPS position was among them.
    pub gps: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: usize,
    pub exif: ExifReport,
    pub quality: Quality,
    /// 64-bit DCT perceptual hash, hex.
    pub phash: String,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<&'static str, f64>,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Decodes within `limits`: the format from the magic bytes, the size from
/// the header before any pixel is decoded (a 100k×100k header is refused
/// without allocating), then the pixels under an allocation cap.
pub fn decode(
    bytes: &[u8],
    limits: DecodeLimits,
) -> Result<(DynamicImage, ImageFormat), VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(VisionError::TooLarge(bytes.len(), limits.max_bytes));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    let format = reader.format().ok_or(VisionError::Unsupported)?;
    if !matches!(
        format,
        ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(VisionError::Unsupported);
    }
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    if w == 0
        || h == 0
        || w > limits.max_side
        || h > limits.max_side
        || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(VisionError::TooManyPixels {
            w,
            h,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    reader.limits(l);
    let img = reader
        .decode()
        .map_err(|e| VisionError::Corrupt(e.to_string()))?;
    Ok((img, format))
}

/// The EXIF tags in the file (JPEG, TIFF, PNG, WebP containers).
pub fn exif_report(bytes: &[u8]) -> ExifReport {
    let fields = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .map(|e| {
            e.fields()
                .map(|f| (f.tag.to_string(), f.ifd_num, f.tag.context()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let gps = fields.iter().any(|(_, _, ctx)| *ctx == exif::Context::Gps);
    let mut removed: Vec<String> = fields.into_iter().map(|(t, _, _)| t).collect();
    removed.sort();
    removed.dedup();
    ExifReport { removed, gps }
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

/// Every step on one upload, timed.
pub fn analyze(bytes: &[u8], limits: DecodeLimits) -> Result<Report, VisionError> {
    let mut timings = BTreeMap::new();
    let t = Instant::now();
    let (img, format) = decode(bytes, limits)?;
    timings.insert("decode", ms(t));
    let t = Instant::now();
    let exif = exif_report(bytes);
    timings.insert("exif", ms(t));
    // One grayscale working copy (≤ 1024 px a side) for both steps.
    let t = Instant::now();
    let gray = gray_within(&img, 1024);
    timings.insert("grayscale", ms(t));
    let t = Instant::now();
    let quality = quality_of(
        &gray,
        img.width().min(img.height()),
        QualityThresholds::default(),
    );
    timings.insert("quality", ms(t));
    let t = Instant::now();
    let hash = phash_of(&gray);
    timings.insert("phash", ms(t));
    Ok(Report {
        format: format!("{format:?}").to_lowercase(),
        width: img.width(),
        height: img.height(),
        bytes: bytes.len(),
        exif,
        quality,
        phash: format!("{hash:016x}"),
        timings_ms: timings,
    })
}

#[doc(hidden)]
pub mod testdata;
#[cfg(test)]
mod tests;

/// The file without its metadata, losslessly where the format allows: JPEG
/// drops its APP1 (EXIF, XMP), APP13 (IPTC) and COM segments, PNG its
/// eXIf and text chunks. Other formats are returned unchanged (`None`: the
/// file is not what it claims and should not be stored as is).
pub fn strip_metadata(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        strip_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        strip_png(bytes)
    } else {
        Some(bytes.to_vec())
    }
}

fn strip_jpeg(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = b[..2].to_vec();
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        // Start of scan: the rest is entropy-coded data, copied as is.
        if marker == 0xDA {
            out.extend_from_slice(&b[i..]);
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        let end = i + 2 + len;
        if len < 2 || end > b.len() {
            return None;
        }
        if !matches!(marker, 0xE1 | 0xED | 0xFE) {
            out.extend_from_slice(&b[i..end]);
        }
        i = end;
    }
    None
}

fn strip_png(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = b[..8].to_vec();
    let mut i = 8;
    while i + 12 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let end = i.checked_add(12)?.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        let kind = &b[i + 4..i + 8];
        if !matches!(kind, b"eXIf" | b"tEXt" | b"iTXt" | b"zTXt") {
            out.extend_from_slice(&b[i..end]);
        }
        if kind == b"IEND" {
            return Some(out);
        }
        i = end;
    }
    None
}
