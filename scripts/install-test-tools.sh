#!/usr/bin/env bash
# Servers the test suite runs against that are not Debian packages, built
# from crates.io when missing (idempotent):
#   s3s-fs   an S3-compatible server over a folder (s3s project, Apache-2.0):
#            the attachment store's S3 path is tested against it.
# Installed under $HELPDESK_TOOLS (default ~/.cache/helpdesk-ai/tools); prints
# nothing when everything is there. scripts/test.sh runs this and tells the
# tests where the binaries are.
set -euo pipefail
root="${HELPDESK_TOOLS:-$HOME/.cache/helpdesk-ai/tools}"
S3S_FS_VERSION=0.14.1
if [ ! -x "$root/bin/s3s-fs" ] || [ "$("$root/bin/s3s-fs" --version 2>/dev/null)" != "s3s-fs $S3S_FS_VERSION" ]; then
  echo "building s3s-fs $S3S_FS_VERSION into $root (an S3-compatible server for the tests; ~2 minutes)" >&2
  mkdir -p "$root"
  # Built from its own folder and target: the project's cargo settings do not apply.
  (cd "$root" && CARGO_TARGET_DIR="$root/build" cargo install --quiet --locked --force \
    s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$root")
  rm -rf "$root/build"
fi
