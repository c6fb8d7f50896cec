#!/usr/bin/env bash
# Renders the screenshot fixtures (tests/fixtures/screenshots/*.html → .png)
# with headless Chromium, as a user's screen would show them. The PNGs are
# committed, so the tests need no browser; run this only to change them.
# Needs Debian's chromium and fonts-dejavu-core (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
for p in chromium fonts-dejavu-core; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; break; }
done
shot() { # html png width height
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$3,$4" --screenshot="$2" "file://$PWD/$1" 2>/dev/null
}
shot tests/fixtures/screenshots/ora_error.html tests/fixtures/screenshots/ora_error.png 900 420
shot tests/fixtures/screenshots/payment_error.html tests/fixtures/screenshots/payment_error.png 1000 520
shot tests/fixtures/screenshots/ticket_list_1080p.html tests/fixtures/screenshots/ticket_list_1080p.png 1920 1080
ls -l tests/fixtures/screenshots/*.png
