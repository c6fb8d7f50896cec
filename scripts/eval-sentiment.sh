#!/usr/bin/env bash
# Sentiment quality (issue 3's measurement): evaluates the active `sentiment`
# head (the shipped one on a fresh data directory) on SST-2's dev set, scored
# negative vs positive, and on 30 ticket-like sentences of known polarity.
# With --retrain, first rebuilds the shipped head with the documented command.
# Reports (JSON, Markdown, PNG) land in bench-results/sentiment/.
#
# Usage: scripts/eval-sentiment.sh [--retrain]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
cargo build --release --bin helpdesk >&2
OUT=bench-results/sentiment
mkdir -p "$OUT"
HD=(target/release/helpdesk --data-dir "$OUT/data")
[ -n "${CARGO_TARGET_DIR:-}" ] && HD[0]="$CARGO_TARGET_DIR/release/helpdesk"

if [ "${1:-}" = "--retrain" ]; then
  "${HD[@]}" train --task sentiment --data bench/sst2/train.tsv --heldout tests/fixtures/sst2_dev.tsv \
    --label-map 0=negative,1=positive --neutral-label neutral --target-precision 0.9 \
    --lexical-weights 0 --evidence-per-class 4 --layer-features --ship models/heads/sentiment --report-dir "$OUT" > "$OUT/train.json"
fi

for set in sst2_dev ticket_sentiment; do
  file=tests/fixtures/$set.tsv; [ -f "$file" ] || file=tests/fixtures/$set.csv
  "${HD[@]}" eval --task sentiment --data "$file" --label-map 0=negative,1=positive \
    --report-dir "$OUT" --json > "$OUT/$set.json"
  python3 - "$OUT/$set.json" "$set" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>16}: {r['examples']} texts, accuracy {r['accuracy']*100:.2f} %, "
      f"not neutral {r['coverage']*100:.1f} % at precision {r['precision_at_threshold']*100:.2f} %, ECE {r['ece']:.4f}")
PY
done
