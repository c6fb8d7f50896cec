#!/usr/bin/env bash
# The same-run comparison BENCHMARKS.md reports: sentence-transformers
# (scripts/bench-reference.sh) and this service (scripts/bench-embed.sh, TEI
# API), alternated twice so a slow moment of a shared machine hits both, then
# a table of medians and ratios. text-embeddings-inference cannot run here (no
# container engine, no network to fetch it): its figures come from
# ../shared/bench/README.md, measured on this kind of machine.
set -euo pipefail
cd "$(dirname "$0")/.."
for round in 1 2; do
  scripts/bench-reference.sh > "bench-results/compare-st-$round.json"
  scripts/bench-embed.sh --repeats 2 > "bench-results/compare-helpdesk-$round.txt"
  cp bench-results/embed-tei.json "bench-results/compare-helpdesk-$round.json"
done
python3 - <<'PY'
import json, statistics as st
st_runs = [json.loads(open(f"bench-results/compare-st-{r}.json").read().strip().splitlines()[-1]) for r in (1, 2)]
hd_runs = [json.load(open(f"bench-results/compare-helpdesk-{r}.json")) for r in (1, 2)]
st_tp = st.median(x for r in st_runs for x in r["batch32_sent_per_s"])
hd_tp = st.median(x["sent_per_s"] for r in hd_runs for x in r["seq_batch"]["runs"])
hd_conc = st.median(x["sent_per_s"] for r in hd_runs for x in r["conc_batch"]["runs"])
st_p50 = st.median(r["single_p50_ms"] for r in st_runs)
hd_p50 = st.median(r["single"]["p50_ms"] for r in hd_runs)
hd_p99 = st.median(r["single"]["p99_ms"] for r in hd_runs)
rss = max(int(r["mem_after"]["VmHWM"].split()[0]) for r in hd_runs) / 1024
ready = max(r["ready_seconds"] for r in hd_runs)
cos = min(r["correctness"]["cos_min"] for r in hd_runs)
print("| system | batch-32 sentences/s | 8 clients × 32 | single p50 / p99 | peak RSS | ready |")
print("|---|---|---|---|---|---|")
print(f"| helpdesk-ai (this run, HTTP) | **{hd_tp:.1f}** | {hd_conc:.1f} | {hd_p50:.1f} / {hd_p99:.1f} ms | {rss:.0f} MB | {ready:.2f} s |")
print(f"| sentence-transformers {st_runs[0]['label'].split()[1]} (this run, in-process, 2 threads) | {st_tp:.1f} | – | {st_p50:.1f} ms p50 | {max(r['peak_rss_mb'] for r in st_runs):.0f} MB | – |")
print(f"| text-embeddings-inference 1.9.3 (shared/bench README, not this run) | 16.5 | – | 40 / 72 ms | 200 MB | 0.45 s |")
print(f"\nRatios: {hd_tp/st_tp:.2f}× sentence-transformers (same run), {hd_tp/16.5:.1f}× TEI's published 16.5; "
      f"vectors over HTTP: worst cosine to the reference {cos:.6f}.")
PY
