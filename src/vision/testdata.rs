//! Synthetic images for tests (unit and integration): made in code, so
//! no image file of unknown origin sits in the repository.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn encode(img: &DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), f)
        .expect("encoding an in-memory image");
    out
}

/// A sharp test card: black and white squares of 8 px with a gradient.
pub fn card(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let on = ((x / 8) + (y / 8)) % 2 == 0;
        let g = (x * 255 / w.max(1)) as u8;
        if on {
            Rgb([240, 240, g])
        } else {
            Rgb([15, g, 15])
        }
    }))
}

/// A JPEG with an APP1 EXIF segment holding a camera model and a GPS
/// latitude, as a phone writes them.
pub fn jpeg_with_gps() -> Vec<u8> {
    let jpeg = encode(&card(64, 64), ImageFormat::Jpeg);
    // TIFF, little-endian: IFD0 {Model, GPS IFD pointer}, GPS IFD {LatitudeRef}.
    let mut t = Vec::new();
    t.extend_from_slice(b"II*\0");
    t.extend_from_slice(&8u32.to_le_bytes());
    let ifd0_entries = 2u16;
    let gps_ifd_offset = 8 + 2 + 12 * u32::from(ifd0_entries) + 4;
    let model_offset = gps_ifd_offset + 2 + 12 + 4;
    t.extend_from_slice(&ifd0_entries.to_le_bytes());
    // Model (0x0110), ASCII, 6 bytes "Phone\0" at model_offset.
    t.extend_from_slice(&0x0110u16.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&6u32.to_le_bytes());
    t.extend_from_slice(&model_offset.to_le_bytes());
    // GPSInfo pointer (0x8825), LONG.
    t.extend_from_slice(&0x8825u16.to_le_bytes());
    t.extend_from_slice(&4u16.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&gps_ifd_offset.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD: GPSLatitudeRef (0x0001), ASCII "N\0" inline.
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&0x0001u16.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    t.extend_from_slice(&2u32.to_le_bytes());
    t.extend_from_slice(b"N\0\0\0");
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(b"Phone\0");
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&t);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `img` as a camera would give it: sensor noise (±12, deterministic), so
/// no two neighbours are exactly equal as they are in a rendering.
pub fn photographed(img: &image::GrayImage) -> image::GrayImage {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    image::GrayImage::from_fn(img.width(), img.height(), |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 25) as i32 - 12;
        image::Luma([(i32::from(img.get_pixel(x, y)[0]) + n).clamp(0, 255) as u8])
    })
}
