#!/usr/bin/env bash
# The test command (README): installs the Debian packages the checks use
# (tesseract; a no-op when present) and fetches the models the tests need
# (a no-op when present), then runs every test in the release profile, the
# one the server and benches use, so a developer and CI build the
# dependencies once. Tests that need a model or tesseract fail loudly when it
# is missing; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-models.sh
scripts/install-test-tools.sh
export S3S_FS="${S3S_FS:-${HELPDESK_TOOLS:-$HOME/.cache/helpdesk-ai/tools}/bin/s3s-fs}"
# The Qdrant-server backend's tests are marked ignored: they need a server,
# which they get from QDRANT_URL; without one they are reported as not run.
nextest_ignored=() test_ignored=()
if [ -n "${QDRANT_URL:-}" ]; then
  nextest_ignored=(--run-ignored all) test_ignored=(--include-ignored)
fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --no-fail-fast "${nextest_ignored[@]}" "$@"
else
  echo "cargo-nextest not found; using cargo test (cargo install cargo-nextest for faster runs)" >&2
  cargo test --release --no-fail-fast "$@" -- "${test_ignored[@]}"
fi
if [ -z "${QDRANT_URL:-}" ]; then
  echo "NOT RUN: the Qdrant-server backend's integration tests (set QDRANT_URL to a Qdrant server's gRPC address to run them)"
fi
