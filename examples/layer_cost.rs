//! What reading layer features costs against the base pass: the same texts
//! in batches of 32, `embed` vs `embed_layers` + `layer_features`, best of 5,
//! interleaved. `cargo run --release --example layer_cost` (env TEXTS: a
//! CSV/TSV with a header and the text first; default Banking77's test set).

use std::path::Path;
use std::time::Instant;

use helpdesk::inference::encoder::layer_features;
use helpdesk::inference::{load_text_encoder, DeviceKind};
use helpdesk::ml::dataset::load;

fn main() -> anyhow::Result<()> {
    let path = std::env::var("TEXTS").unwrap_or_else(|_| "bench/banking77/test.csv".into());
    let enc = load_text_encoder(
        "all-minilm-l6-v2",
        Path::new("models"),
        DeviceKind::Cpu,
        false,
    )?;
    let data = load(Path::new(&path), &Default::default())?;
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let time = |f: &dyn Fn(&[&str]) -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let t = Instant::now();
        for c in texts.chunks(32) {
            f(c)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let (mut base, mut layers) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        base = base.min(time(&|c| Ok(enc.embed(c, true, true).map(|_| ())?))?);
        layers = layers.min(time(&|c| {
            let f: Vec<Vec<f32>> = enc
                .embed_layers(c)?
                .iter()
                .map(|m| layer_features(m, enc.dims()))
                .collect();
            anyhow::ensure!(f.len() == c.len());
            Ok(())
        })?);
    }
    println!(
        "{} texts from {path}: base pass {base:.3} s, with layer features {layers:.3} s: {:.3}x",
        texts.len(),
        layers / base
    );
    Ok(())
}
