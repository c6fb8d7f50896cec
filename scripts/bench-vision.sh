#!/usr/bin/env bash
# The image checks' time per step (issue 6's measurement) on a 1920×1080 PNG
# screenshot-like image and a 12-megapixel JPEG photo-like image, both made
# in code, and tesseract's test page (tests/fixtures/phototest.tif), on one
# thread (taskset to one core when available).
# Results: bench-results/vision.json and the same lines on stdout.
#
# Usage: scripts/bench-vision.sh   (env RUNS=30)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-models.sh efficientnet-lite0 >&2
cargo build --release --example vision_bench >&2
export RAYON_NUM_THREADS=1
bin="${CARGO_TARGET_DIR:-target}/release/examples/vision_bench"
mkdir -p bench-results
if command -v taskset >/dev/null; then
  taskset -c 0 "$bin" | tee bench-results/vision.json
else
  "$bin" | tee bench-results/vision.json
fi
