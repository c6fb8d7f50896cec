#!/usr/bin/env bash
# Vector search (issue 4's measurement): search latency p50/p99 and recall@10
# against brute force at 10k and 100k random 384-d vectors on the embedded
# qdrant-edge index, upsert and HNSW-build time; then retrieval quality on
# Banking77 (train queries as the corpus, test queries as queries, relevant =
# same intent): MRR@10 and nDCG@10 for dense, BM25 and hybrid; and latency and
# recall@10 on real text embeddings (SST-2's 67k train phrases); and KB
# ingestion throughput with its time per stage.
# Results: bench-results/search.json and a summary on stdout.
#
# Usage: scripts/bench-search.sh   (env SIZES=10000,100000; QUALITY=0 / REAL=0 / INGEST=0 skip those
# parts; HNSW_EF, EXACT_SCAN_MAX=0 to measure the HNSW graph alone)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh all-minilm-l6-v2 >/dev/null
cargo build --release --example search_bench >&2
"${CARGO_TARGET_DIR:-target}/release/examples/search_bench"
