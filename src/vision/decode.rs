//! Decoding an upload within limits, its EXIF report, and the copy without
//! metadata. Depends on `image` and `kamadak-exif` alone, so the fuzz target
//! (`fuzz/fuzz_targets/decode.rs`) builds this file by itself.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
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
    #[error("the image model is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct ExifReport {
    /// Every EXIF tag found (all are dropped from the stored copy).
    pub removed: Vec<String>,
    /// A GPS position was among them.
    pub gps: bool,
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
