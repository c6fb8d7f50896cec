#!/usr/bin/env bash
# The image checks' time per step (issue 6's measurement) on a 1920×1080 PNG
# screenshot-like image and a 12-megapixel JPEG photo-like image, both made
# in code, on one thread (taskset to one core when available).
# Results: bench-results/vision.json and the same lines on stdout.
#
# Usage: scripts/bench-vision.sh   (env RUNS=30)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --example vision_bench >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/vision_bench"
mkdir -p bench-results
if command -v taskset >/dev/null; then
  taskset -c 0 "$bin" | tee bench-results/vision.json
else
  "$bin" | tee bench-results/vision.json
fi
