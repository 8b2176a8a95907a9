#!/usr/bin/env bash
# Set up and run the local platform on its embedded defaults (SQLite, a local site of
# subprocess pilots): it runs a small example end to end, prints its results, and keeps
# serving until Ctrl-C. Extra arguments go to `farside up` (e.g. --once, --port 0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/farside up --example "$@"
