#!/usr/bin/env bash
# Encoder micro-benchmarks: the criterion bench (batch 1/8/32 x length
# 16/64/256, and the machine's f32 matmul rate) turned into tokens/s, GFLOP/s
# and fraction of the matmul peak; then the design ablation on the corpus with
# 1 and 2 threads. Writes bench-results/encoder.md and prints it.
#
# Usage: scripts/bench-encoder.sh [--quick]   (--quick: criterion's minimum sampling)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
mkdir -p bench-results
TARGET=${CARGO_TARGET_DIR:-target}
extra=()
[ "${1:-}" = "--quick" ] && extra=(-- --warm-up-time 1 --measurement-time 2)
cargo bench --bench encoder "${extra[@]}" >&2
cargo build --release --example encoder_ablation >&2
: > bench-results/ablation.jsonl
for t in 1 2; do
  RAYON_NUM_THREADS=$t "$TARGET/release/examples/encoder_ablation" | tee -a bench-results/ablation.jsonl >&2
done
# The fraction of the matmul peak, both measured in the same seconds (best of 5, interleaved).
ABLATION=quick "$TARGET/release/examples/encoder_ablation" | tail -1 > bench-results/peak.json
python3 - "$TARGET/criterion" <<'PY' | tee bench-results/encoder.md
import json, os, platform, subprocess, sys
crit = sys.argv[1]
def est(*parts):
    p = os.path.join(crit, *parts, "new", "estimates.json")
    return json.load(open(p))["median"]["point_estimate"] / 1e9  # seconds
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
H, I, LAYERS = 384, 1536, 6
def flops(b, l):
    return b * l * 2 * LAYERS * (4 * H * H + 2 * H * I) + b * 2 * 2 * LAYERS * l * l * H
peak = 0
rows_mm = []
for name in sorted(os.listdir(os.path.join(crit, "matmul"))):
    if name == "report": continue
    m, k, n = map(int, name.split("x"))
    g = 2 * m * k * n / est("matmul", name) / 1e9
    peak = max(peak, g)
    rows_mm.append(f"| {m}×{k} · {k}×{n} | {g:.1f} |")
print(f"Machine: {cpu}, {os.cpu_count()} cores; rustc {subprocess.run(['rustc','--version'],capture_output=True,text=True).stdout.split()[1]}\n")
print("f32 matmul (candle → gemm), the peak the encoder is compared with:\n")
print("| shape | GFLOP/s |\n|---|---|"); print("\n".join(rows_mm))
print(f"\nEncoder forward (packed, fused attention; median of criterion samples), peak = {peak:.1f} GFLOP/s:\n")
print("| batch × length | time (ms) | tokens/s | GFLOP/s | of matmul peak |\n|---|---|---|---|---|")
for l in (16, 64, 256):
    for b in (1, 8, 32):
        s = est("encoder", f"b{b}", str(l))
        g = flops(b, l) / s / 1e9
        print(f"| {b} × {l} | {s*1e3:.1f} | {b*l/s:,.0f} | {g:.1f} | {100*g/peak:.0f} % |")
q = json.load(open("bench-results/peak.json"))
print(f"\nInterleaved, best of 5 (examples/encoder_ablation.rs, ABLATION=quick): corpus batches of 32 at "
      f"{q['encoder_gflops']:.1f} GFLOP/s against a sustained matmul rate of {q['matmul_peak_gflops']:.1f} GFLOP/s: "
      f"**{100*q['fraction_of_peak']:.0f} % of the peak**.")
print("\nAblation on the first 384 corpus sentences (42 tokens on average):\n")
print("| variant | threads | batch | sentences/s | GFLOP/s | padding waste |\n|---|---|---|---|---|---|")
for line in open("bench-results/ablation.jsonl"):
    r = json.loads(line)
    print(f"| {r['variant']} | {r['threads']} | {r['batch']} | {r['sentences_per_s']:.1f} | {r['gflops']:.1f} | {100*r['padding_waste']:.0f} % |")
PY
