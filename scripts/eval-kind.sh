#!/usr/bin/env bash
# Image-kind accuracy (issue 6) on a labelled set built from real images:
#   photo       scikit-image's sample photos (its PyPI wheel ships them)
#   screenshot  real local HTML pages (Rust's docs, Debian package docs)
#               rendered by headless Chromium at 1366x768
#   document    scikit-image's scanned page and text images, tesseract's
#               phototest.tif, and licence texts rendered as pages and turned
#               into simulated scans (skew, blur, grey paper, noise, JPEG)
#   hardware    none: no real photos of IT hardware can be had offline here
# The set lives in bench-results/kind-set/ (not committed); results go to
# bench-results/kind.json and stdout.
#
# Usage: scripts/eval-kind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
for p in chromium fonts-dejavu-core; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; break; }
done
scripts/fetch-models.sh efficientnet-lite0 >&2
cargo build --release --example kind_eval >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/kind_eval"
set_dir=bench-results/kind-set
rm -rf "$set_dir" && mkdir -p "$set_dir"/{photo,screenshot,document} "$set_dir/pages"
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "scikit-image==0.24.0"
python3 - "$tmp"/scikit_image-*.whl "$set_dir" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
photos = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
          "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
          "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png",
          "retina.jpg", "rocket.jpg"]
documents = ["page.png", "text.png"]
with zipfile.ZipFile(wheel) as z:
    for names, kind in ((photos, "photo"), (documents, "document")):
        for n in names:
            (out / kind / n).write_bytes(z.read(f"skimage/data/{n}"))
PY
cp tests/fixtures/phototest.tif "$set_dir/document/"
shot() { chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$3" --screenshot="$2" "file://$1" 2>/dev/null >/dev/null; }
docs=$(ls -d "$HOME"/.rustup/toolchains/*/share/doc/rust/html 2>/dev/null | head -1 || true)
pages=()
if [ -n "$docs" ]; then
  for p in book/ch01-01-installation.html book/ch04-01-what-is-ownership.html book/ch08-02-strings.html \
           book/ch09-02-recoverable-errors-with-result.html book/ch16-01-threads.html \
           std/vec/struct.Vec.html std/collections/struct.HashMap.html std/fs/index.html \
           std/io/trait.Read.html std/string/struct.String.html cargo/index.html \
           cargo/reference/manifest.html rustc/index.html; do
    [ -f "$docs/$p" ] && pages+=("$docs/$p")
  done
fi
for p in /usr/share/doc/libffi8/html/index.html /usr/share/doc/libffi8/html/The-Basics.html \
         /usr/share/doc/libffi8/html/Simple-Example.html /usr/share/doc/qemu-utils/qemu-img.html \
         /usr/share/doc/qemu-utils/qemu-nbd.html /usr/share/doc/base-passwd/users-and-groups.html; do
  [ -f "$p" ] && pages+=("$p")
done
i=0
for p in "${pages[@]}"; do
  i=$((i + 1)); shot "$p" "$set_dir/screenshot/page$i.png" 1366,768
done
for l in Apache-2.0 BSD GPL-2 GPL-3 LGPL-2.1 MPL-2.0 Artistic GFDL-1.3 CC0-1.0 MPL-1.1; do
  [ -f "/usr/share/common-licenses/$l" ] && shot "/usr/share/common-licenses/$l" "$set_dir/pages/$l.png" 850,1100
done
"$bin" scan "$set_dir/pages" "$set_dir/document"
rm -rf "$set_dir/pages"
mkdir -p bench-results
"$bin" eval "$set_dir" | tee bench-results/kind.json
