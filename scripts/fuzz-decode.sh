#!/usr/bin/env bash
# Fuzzes the attachment decoder (src/vision/decode.rs) with libFuzzer via
# cargo fuzz, from the hand-made seeds (fuzz/seeds/decode: bombs,
# truncations, wrong magic, empty) and the kept corpus fuzz/corpus/decode,
# which it adds to and then minimises (the test suite replays both:
# src/vision/tests.rs, tests/api/vision_api.rs). cargo fuzz wants
# nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
#
# Usage: scripts/fuzz-decode.sh [SECONDS]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
# 2 GiB RSS cap: a decompression bomb that got past the limits fails the run.
cargo fuzz run decode corpus/decode seeds/decode -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576
# Keep the corpus small: only inputs that add coverage.
cargo fuzz cmin decode corpus/decode -- -rss_limit_mb=2048 >/dev/null 2>&1
