#!/usr/bin/env python3
"""An independent reference forward pass of EfficientNet-Lite0 in numpy, for
the candle network's test (src/vision/effnet.rs).

It reads the same model.safetensors but none of the Rust code's choices
beyond the architecture itself: batch norm is applied as batch norm (the Rust
side folds it into the convolutions), convolutions are written as plain
im2col products, the padding is TensorFlow's "SAME" rule computed here
again. The input is a fixed synthetic tensor both sides can make:
x[c, h, w] = sin(0.001 * (c * 50176 + h * 224 + w)) * 2.

Writes tests/fixtures/effnet_reference.json: the logits of ten fixed classes,
the top-5 classes and the first 16 penultimate features.

Usage: python3 scripts/effnet_reference.py   (needs numpy: pip install numpy)
"""
import json
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EPS = 1e-3
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def load(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"]).astype(np.float64)
    return out


def same_pad(n, k, s):
    out = -(-n // s)
    pad = max((out - 1) * s + k - n, 0)
    return pad // 2, pad - pad // 2


def conv(x, w, stride, groups=1):
    """x: (C, H, W); w: (O, C/groups, k, k); TF SAME padding."""
    c, h, wd = x.shape
    o, cg, k, _ = w.shape
    pt, pb = same_pad(h, k, stride)
    pl, pr = same_pad(wd, k, stride)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    oh, ow = -(-h // stride), -(-wd // stride)
    if groups == 1:
        cols = np.empty((c * k * k, oh * ow))
        i = 0
        for ci in range(c):
            for ky in range(k):
                for kx in range(k):
                    cols[i] = xp[ci, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride].reshape(-1)
                    i += 1
        return (w.reshape(o, -1) @ cols).reshape(o, oh, ow)
    out = np.zeros((o, oh, ow))
    for ky in range(k):
        for kx in range(k):
            out += xp[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride] * w[:, 0, ky, kx][:, None, None]
    return out


def bn(x, p, name):
    g, b = p[f"{name}.weight"], p[f"{name}.bias"]
    m, v = p[f"{name}.running_mean"], p[f"{name}.running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.clip(x, 0, 6)


def forward(p, x):
    x = relu6(bn(conv(x, p["_conv_stem.weight"], 2), p, "_bn0"))
    i, cin = 0, 32
    for expand, k, stride, cout, repeats in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            pre, y = f"_blocks.{i}", x
            if expand != 1:
                y = relu6(bn(conv(y, p[f"{pre}._expand_conv.weight"], 1), p, f"{pre}._bn0"))
            y = relu6(bn(conv(y, p[f"{pre}._depthwise_conv.weight"], s, groups=y.shape[0]), p, f"{pre}._bn1"))
            y = bn(conv(y, p[f"{pre}._project_conv.weight"], 1), p, f"{pre}._bn2")
            x = y + x if (s == 1 and cin == cout) else y
            i, cin = i + 1, cout
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1), p, "_bn1"))
    features = x.mean(axis=(1, 2))
    logits = p["_fc.weight"] @ features + p["_fc.bias"]
    return logits, features


def main():
    p = load(ROOT / "models/efficientnet-lite0/model.safetensors")
    idx = np.arange(3 * 224 * 224, dtype=np.float64).reshape(3, 224, 224)
    x = np.sin(0.001 * idx) * 2
    logits, features = forward(p, x)
    fixed = [0, 1, 281, 285, 409, 508, 620, 664, 916, 999]
    top = np.argsort(-logits)[:5]
    out = {
        "input": "x[c,h,w] = sin(0.001 * (c*50176 + h*224 + w)) * 2",
        "made_by": "scripts/effnet_reference.py (numpy, batch norm unfolded)",
        "logits": {str(c): float(logits[c]) for c in fixed},
        "top5": [int(c) for c in top],
        "features16": [float(v) for v in features[:16]],
    }
    (ROOT / "tests/fixtures/effnet_reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out)[:400])


if __name__ == "__main__":
    main()
