//! Any bytes into the attachment decoder: it must answer (an image or an
//! error), never panic, and stay inside its allocation limit (libFuzzer's
//! -rss_limit_mb in scripts/fuzz-decode.sh catches a blow-up).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/vision/decode.rs"]
#[allow(dead_code)]
mod decode;

fuzz_target!(|data: &[u8]| {
    let limits = decode::DecodeLimits {
        max_bytes: 1 << 20,
        max_pixels: 4_000_000,
        max_side: 4096,
        max_alloc: 64 << 20,
    };
    let _ = decode::decode(data, limits);
    let _ = decode::exif_report(data);
    if let Some(clean) = decode::strip_metadata(data) {
        assert!(clean.len() <= data.len(), "stripping never adds bytes");
    }
});
