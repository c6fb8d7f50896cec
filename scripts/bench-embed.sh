#!/usr/bin/env bash
# End-to-end embedding benchmark over HTTP, as a client sees the service:
# starts `helpdesk serve` (release build), measures the time until /ready,
# drives it from a separate load process (scripts/bench_client.py over the
# fixed corpus bench/corpus.jsonl: sequential batches of 32, 8 concurrent
# clients of 32, single-sentence latency, peak RSS), checks its vectors
# against the sentence-transformers reference, and stops it.
#
# Usage: scripts/bench-embed.sh [--api tei|openai] [--threads N] [--repeats N] [--single-n N]
# Results: bench-results/embed-<api>.json and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

API=tei THREADS=0 REPEATS=2 SINGLE_N=300 PORT=${PORT:-18080}
while [ $# -gt 0 ]; do
  case "$1" in
    --api) API=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --single-n) SINGLE_N=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
cargo build --release --bin helpdesk >&2
mkdir -p bench-results

# The reference texts that fit the model's 256 tokens (the client does not truncate).
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("tests/fixtures/minilm_reference.jsonl")]
json.dump([{"text": r["text"], "embedding": r["embedding"]} for r in rows if r["tokens_untruncated"] <= 256],
          open("bench-results/reference.json", "w"))
PY

start=$(date +%s.%N)
target/release/helpdesk serve --bind "127.0.0.1:$PORT" --threads "$THREADS" 2>bench-results/server.log &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; do
  kill -0 $PID 2>/dev/null || { cat bench-results/server.log >&2; exit 1; }
  sleep 0.005
done
ready=$(python3 -c "print(f'{$(date +%s.%N) - $start:.3f}')")
echo "ready after ${ready} s (process start to first 200 from /ready)"
curl -s "http://127.0.0.1:$PORT/info"; echo

python3 scripts/bench_client.py --url "http://127.0.0.1:$PORT" --api "$API" --model all-minilm-l6-v2 \
  --corpus bench/corpus.jsonl --reference bench-results/reference.json --pid $PID \
  --repeats "$REPEATS" --single-n "$SINGLE_N" --label "helpdesk-$API" --out "bench-results/embed-$API.json"
python3 - "$ready" "bench-results/embed-$API.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2])); r["ready_seconds"] = float(sys.argv[1])
json.dump(r, open(sys.argv[2], "w"), indent=1)
PY
