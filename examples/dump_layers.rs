//! Experiment helper: per-layer mean-pooled states of texts, for trying head
//! features outside the service (multi-layer pooling).
//!
//! `IN=texts.txt OUT=feats.f32 cargo run --release --example dump_layers`:
//! one text per line in; out, per text, `layers * hidden` little-endian f32
//! (each layer's mean token state, layer 1 first; not normalised).

use std::io::{BufRead, Write};
use std::path::Path;

use helpdesk::inference::{load_text_encoder, DeviceKind};

fn main() -> anyhow::Result<()> {
    let input = std::env::var("IN")?;
    let output = std::env::var("OUT")?;
    let enc = load_text_encoder(
        "all-minilm-l6-v2",
        Path::new("models"),
        DeviceKind::Cpu,
        false,
    )?;
    let texts: Vec<String> = std::io::BufReader::new(std::fs::File::open(&input)?)
        .lines()
        .collect::<Result<_, _>>()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&output)?);
    let t0 = std::time::Instant::now();
    for chunk in texts.chunks(64) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for row in enc.embed_layers(&refs)? {
            for v in row {
                out.write_all(&v.to_le_bytes())?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "{} texts in {:.1} s",
        texts.len(),
        t0.elapsed().as_secs_f32()
    );
    Ok(())
}
