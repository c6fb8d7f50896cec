//! Runs the encoder over the benchmark corpus in batches of 32, for profilers
//! (`perf record target/release/examples/profile_encoder`).
use std::time::Instant;

use helpdesk::inference::{load_text_encoder, DeviceKind};

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let enc = load_text_encoder(
        "all-minilm-l6-v2",
        &root.join("models"),
        DeviceKind::Cpu,
        false,
    )
    .expect("model missing: run scripts/fetch-models.sh");
    let corpus =
        std::fs::read_to_string(root.join("bench/corpus.jsonl")).expect("bench/corpus.jsonl");
    let texts: Vec<String> = corpus
        .lines()
        .take(640)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let toks = enc.tokenizer().tokenize(&refs, true).unwrap();
    let seqs: Vec<&[u32]> = toks.iter().map(|t| t.ids.as_slice()).collect();
    let start = Instant::now();
    for chunk in seqs.chunks(32) {
        enc.embed_tokens(chunk, true).unwrap();
    }
    let s = start.elapsed().as_secs_f64();
    let tokens: usize = seqs.iter().map(|s| s.len()).sum();
    println!(
        "{} sentences, {tokens} tokens in {s:.2} s: {:.1} sentences/s, {:.0} tokens/s",
        seqs.len(),
        seqs.len() as f64 / s,
        tokens as f64 / s
    );
}
