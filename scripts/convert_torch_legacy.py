#!/usr/bin/env python3
"""Converts a legacy (pre-1.6, non-zip) `torch.save` of a state dict to
safetensors (F32 tensors only), in plain Python: no torch, no numpy.

The pickle is read with a restricted unpickler that builds nothing but
tensors' shapes, strides and storage references (any other class is refused,
so no code in the file runs). Weights stored in other layouts (strides) are
gathered into row-major order. The output is deterministic: its sha256 is
pinned in models/registry.toml.

Used by scripts/fetch-models.sh and by `helpdesk models fetch` (which runs
this same file with python3).

Usage: convert_torch_legacy.py SRC.pth DST.safetensors
"""
import array
import collections
import json
import pickle
import struct
import sys
from pathlib import Path

def convert_torch_legacy(src: Path, dst: Path):
    """A legacy (pre-1.6, non-zip) torch.save of a state dict -> safetensors (F32)."""
    sizes = {"FloatStorage": 4, "LongStorage": 8, "IntStorage": 4, "HalfStorage": 2}
    storages = {}
    class Tensor:
        def __init__(self, storage, offset, size, stride, *_):
            self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
    class Restricted(pickle.Unpickler):
        def find_class(self, mod, name):
            if (mod, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return Tensor
            if mod == "torch" and name in sizes:
                return name
            if (mod, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"refusing to load {mod}.{name}")
        def persistent_load(self, pid):
            kind, stype, key, _location, numel, view = pid
            if kind != "storage" or view is not None:
                raise pickle.UnpicklingError(f"unsupported storage {pid[:3]}")
            return storages.setdefault(key, [stype, numel, None])
    with src.open("rb") as f:
        for _ in range(3):  # magic number, protocol version, sys info
            pickle.load(f)
        state = Restricted(f, encoding="utf-8").load()
        for key in pickle.load(f):
            (n,) = struct.unpack("<q", f.read(8))
            st = storages[key]
            st[2] = f.read(n * sizes[st[0]])
    header, blobs, at = {}, [], 0
    for name, t in state.items():
        stype, _, raw = t.storage
        if stype != "FloatStorage":
            continue  # num_batches_tracked counters
        src_vals = array.array("f", raw)
        out = array.array("f", bytes(4 * max(1, _numel(t.size))))
        # Gather into row-major order: the file keeps some weights in other
        # layouts (strides), which safetensors cannot express.
        idx = [0] * len(t.size)
        for i in range(len(out)):
            out[i] = src_vals[t.offset + sum(a * b for a, b in zip(idx, t.stride))]
            for d in range(len(idx) - 1, -1, -1):
                idx[d] += 1
                if idx[d] < t.size[d]:
                    break
                idx[d] = 0
        data = out.tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.size), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = dst.with_suffix(".tmp")
    with tmp.open("wb") as w:
        w.write(struct.pack("<Q", len(h)))
        w.write(h)
        for b in blobs:
            w.write(b)
    tmp.replace(dst)

def _numel(size):
    n = 1
    for s in size:
        n *= s
    return n


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert_torch_legacy(Path(sys.argv[1]), Path(sys.argv[2]))
