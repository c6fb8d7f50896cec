#!/usr/bin/env bash
# The test command (README): fetches the models the tests need (a no-op when
# present), then runs every test in the release profile, the one the server
# and benches use, so a developer and CI build the dependencies once.
# Tests that need a model fail loudly when it is missing; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test (cargo install cargo-nextest for faster runs)" >&2
  cargo test --release --no-fail-fast "$@"
fi
