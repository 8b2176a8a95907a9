#!/usr/bin/env bash
# Set up and run every check: lint, format, types, and the whole test suite (unit,
# integration on SQLite and on a real PostgreSQL that scripts/postgres.sh starts).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not postgres" -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FARSIDE_TEST_POSTGRES=${FARSIDE_TEST_POSTGRES:-$(bash scripts/postgres.sh)}
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== docs are current"
.venv/bin/python -m farside_gateway.docgen --check
echo "== pytest"
.venv/bin/pytest "$@"
