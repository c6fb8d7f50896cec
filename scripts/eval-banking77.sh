#!/usr/bin/env bash
# Banking77 routing quality (issue 3's measurement): trains the `intent` task
# of tenant `bench` on the full train set and on 10 examples per intent
# (seed 42) — also with the intent names as one more example each, and with
# the rest of the train set as unlabelled texts — evaluates each on the test
# set, and prints the figures.
# Reports (JSON, Markdown, PNG) land in bench-results/banking77/.
#
# Usage: scripts/eval-banking77.sh [--data-dir DIR] [--seed S] [extra `helpdesk train` flags]
# Data: bench/banking77/{train,test}.csv (copied from PolyAI's Banking77, CC BY 4.0).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=bench-results/banking77/data SEED=42 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
cargo build --release --bin helpdesk >&2
OUT=bench-results/banking77
mkdir -p "$OUT"
HD=(target/release/helpdesk --data-dir "$DATA_DIR")
[ -n "${CARGO_TARGET_DIR:-}" ] && HD[0]="$CARGO_TARGET_DIR/release/helpdesk"

run() { # name, extra train flags...
  local name=$1; shift
  /usr/bin/time -f "%e s wall, %M KB peak RSS" -o "$OUT/$name.time" \
    "${HD[@]}" train --task "intent-$name" --tenant bench \
      --data bench/banking77/train.csv --heldout bench/banking77/test.csv \
      --seed "$SEED" --promote always --report-dir "$OUT" "$@" ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/$name.json"
  python3 - "$OUT/$name.json" "$OUT/$name.time" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = d["metrics"]; t = d["training"]
print(f"{sys.argv[3]:>8}: accuracy {m['accuracy']*100:.2f} %  macro-F1 {m['macro_f1']*100:.2f} %  "
      f"ECE {m['ece']:.4f}  precision@80%cov {m['precision_at_80_coverage']*100:.2f} %  "
      f"coverage@thr {m['coverage']*100:.1f} % (precision {m['precision_at_threshold']*100:.2f} %)  "
      f"lexical weight {d['lexical_weight']}  "
      f"head {t['head_seconds']:.1f} s, embedding {t['embed_seconds']:.1f} s; {open(sys.argv[2]).read().strip()}")
if "unlabelled" in t:
    u = t["unlabelled"]
    print(f"{'':>8}  unlabelled: {u['used']} of {u['given']} used, kept {u.get('kept')}, "
          f"validation loss {u.get('first_head', {}).get('val_loss', float('nan')):.3f} -> {t['head']['val_loss']:.3f}")
PY
}

# Intent names as descriptions ("card_arrival" -> "card arrival"): one more example per intent.
python3 -c 'import json; print(json.dumps({c: c.replace("_", " ") for c in json.load(open("bench/banking77/categories.json"))}))' \
  > "$OUT/label-names.json"

run full
run 10pc --limit-per-class 10
run 10pc-names --limit-per-class 10 --descriptions "$OUT/label-names.json"
# The same 10 per intent, plus the other 9,233 train queries as unlabelled
# tickets (their labels never read): labels propagated over a neighbour graph.
run 10pc-unlabelled --limit-per-class 10 --descriptions "$OUT/label-names.json" \
  --unlabelled bench/banking77/train.csv
