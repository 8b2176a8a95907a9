#!/usr/bin/env bash
# Install Debian's chromium (apt) for the `browser` test suite, which drives it headless
# with Playwright (pip `playwright`, using this executable: no browser download). Idempotent;
# needs root or sudo. Prints the browser's path last.
#   scripts/browser.sh
set -euo pipefail
find_browser() { command -v chromium || command -v chromium-browser || true; }
if [ -z "$(find_browser)" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || { echo "no apt-get: install chromium yourself" >&2; exit 1; }
  $sudo apt-get update -qq
  # fonts: without any, the Lab's screenshots show boxes instead of text
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
fi
browser=$(find_browser)
[ -n "$browser" ] || { echo "chromium did not install" >&2; exit 1; }
"$browser" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || {
  echo "$browser does not start" >&2; exit 1; }
echo "$browser"
