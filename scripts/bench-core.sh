#!/usr/bin/env bash
# The ticketing core's throughput (issue 5's measurement), on loopback with
# the project's own closed-loop client (examples/core_load.rs):
#  1. ticket create and ticket read: requests/s and p50/p99, on SQLite (the
#     embedded default) and on PostgreSQL (a fresh database), with
#     `helpdesk serve --role core`;
#  2. time from ticket create to triage done (p50/p99) with the real model,
#     in one process (`helpdesk serve`), after the tenant trained a team head.
# Rate limits are switched off for the run (one key, one IP: the limits are
# per client, not a capacity cap).
# Results: bench-results/core.json and a summary on stdout.
#
# Usage: scripts/bench-core.sh   (env SECONDS_EACH=10, CONCURRENCY=32,
# BACKENDS="sqlite postgres", TRIAGE=1, TRIAGE_COUNT=60, TRIAGE_RATE=4,
# PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${SECONDS_EACH:-10}"
CONCURRENCY="${CONCURRENCY:-32}"
BACKENDS="${BACKENDS:-sqlite postgres}"
TRIAGE="${TRIAGE:-1}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
cargo build --release --bin helpdesk --example core_load >&2
target="${CARGO_TARGET_DIR:-target}/release"
bin="$target/helpdesk"
load="$target/examples/core_load"
work="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p bench-results
export HELPDESK__SECURITY__RATE_PER_KEY=0 HELPDESK__SECURITY__RATE_PER_IP=0
export HELPDESK__LOG__FILTER=warn HELPDESK__MODEL__ALLOW_DOWNLOAD=false
port=$((20000 + RANDOM % 20000))

wait_ready() {
  for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not become ready" >&2
  return 1
}

results="[]"
add() { results="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.append(json.loads(sys.argv[2])); print(json.dumps(r))' "$results" "$1")"; }

for backend in $BACKENDS; do
  data="$work/$backend"
  mkdir -p "$data"
  pgdb=""
  if [ "$backend" = postgres ]; then
    pgdb="hd_bench_$$"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $pgdb" >/dev/null
    export DATABASE_URL="${PG_ADMIN_URL%/*}/$pgdb"
  else
    export DATABASE_URL="sqlite://$data/helpdesk.db?mode=rwc"
  fi
  key="$("$bin" --data-dir "$data" tenant create bench --admin-email admin@bench.test --admin-password bench-password-1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')"
  "$bin" --data-dir "$data" serve --role core --bind "127.0.0.1:$port" >"$work/$backend.log" 2>&1 &
  server=$!
  wait_ready
  out="$("$load" --url "http://127.0.0.1:$port" --key "$key" --mode create --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH")"
  echo "$backend create: $out"
  add "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["backend"]=sys.argv[2]; print(json.dumps(d))' "$out" "$backend")"
  created="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$out")"
  out="$("$load" --url "http://127.0.0.1:$port" --key "$key" --mode read --ids "$created" --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH")"
  echo "$backend read: $out"
  add "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["backend"]=sys.argv[2]; print(json.dumps(d))' "$out" "$backend")"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  if [ -n "$pgdb" ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE $pgdb WITH (FORCE)" >/dev/null
  fi
  unset DATABASE_URL
done

if [ "$TRIAGE" = 1 ]; then
  # One process with the real model: train acme's team head on the jargon
  # fixture, then tickets in at a steady rate, each polled until triaged.
  data="$work/triage"
  mkdir -p "$data"
  export DATABASE_URL="sqlite://$data/helpdesk.db?mode=rwc"
  key="$("$bin" --data-dir "$data" tenant create bench --admin-email admin@bench.test --admin-password bench-password-1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')"
  "$bin" --data-dir "$data" serve --bind "127.0.0.1:$port" >"$work/triage.log" 2>&1 &
  server=$!
  wait_ready
  python3 - "$port" "$key" <<'EOF'
import csv, json, sys, time, urllib.request
port, key = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
rows = list(csv.DictReader(open("tests/fixtures/jargon_tickets.csv")))
ex = lambda split: [{"text": r["text"], "label": r["label"]} for r in rows if r["split"] == split]
job = call("POST", "/v1/models/team/train", {"examples": ex("train"), "heldout": ex("test"), "seed": 7})
while call("GET", job["status_url"])["status"] not in ("succeeded", "failed"):
    time.sleep(0.2)
for team in sorted({r["label"] for r in rows}):
    call("POST", "/api/v1/teams", {"name": team})
call("PUT", "/api/v1/tenant/settings", {"route_threshold": 0.3})
EOF
  out="$("$load" --url "http://127.0.0.1:$port" --key "$key" --mode triage --count "${TRIAGE_COUNT:-60}" --rate "${TRIAGE_RATE:-4}")"
  echo "triage (SQLite, real model): $out"
  add "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["backend"]="sqlite"; print(json.dumps(d))' "$out")"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
fi

python3 -c 'import json,sys,platform,os; print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "concurrency": int(sys.argv[2]), "seconds_each": float(sys.argv[3]), "results": json.loads(sys.argv[1])}, indent=1))' \
  "$results" "$CONCURRENCY" "$SECONDS_EACH" > bench-results/core.json
echo "written: bench-results/core.json"
