//! Encoder throughput: batch 1/8/32 x sequence length 16/64/256, next to the
//! same machine's f32 matmul rate, so the encoder's fraction of the peak is
//! known. `scripts/bench-encoder.sh` turns the results into GFLOP/s.
//!
//! FLOPs counted per forward: tokens x 2 x layers x (4 H^2 + 2 H I) for the
//! dense layers plus batch x 2 x 2 x layers x L^2 x H for attention.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use helpdesk::inference::{load_text_encoder, DeviceKind};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Deterministic pseudo-random token ids (an LCG), [CLS] ... [SEP].
fn sequences(batch: usize, len: usize) -> Vec<Vec<u32>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..batch)
        .map(|_| {
            let mut ids = vec![101u32];
            for _ in 0..len - 2 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ids.push(1000 + (state >> 33) as u32 % 28_000);
            }
            ids.push(102);
            ids
        })
        .collect()
}

fn encoder(c: &mut Criterion) {
    let enc = load_text_encoder("all-minilm-l6-v2", &models_dir(), DeviceKind::Cpu, false)
        .expect("model missing: run scripts/fetch-models.sh");
    let mut group = c.benchmark_group("encoder");
    group.sample_size(10);
    for &len in &[16usize, 64, 256] {
        for &batch in &[1usize, 8, 32] {
            let seqs = sequences(batch, len);
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            group.throughput(Throughput::Elements((batch * len) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("b{batch}"), len),
                &refs,
                |b, refs| b.iter(|| enc.embed_tokens(refs, true).unwrap()),
            );
        }
    }
    group.finish();
}

/// The shapes of the encoder's dense layers at a batch of 32 x 64 tokens.
fn matmul(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for &(m, k, n) in &[
        (2048usize, 384usize, 1536usize),
        (2048, 1536, 384),
        (2048, 384, 1152),
    ] {
        let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{m}x{k}x{n}"), |b| {
            b.iter(|| a.matmul(&w.t().unwrap()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, encoder, matmul);
criterion_main!(benches);
