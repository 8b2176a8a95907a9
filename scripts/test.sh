#!/usr/bin/env bash
# Set up and run every check: lint, format, types, docs, then the test suites against real
# services that the project's own scripts install and start:
#   default    unit + integration on SQLite and PostgreSQL (scripts/postgres.sh) and Slurm
#              (scripts/slurm.sh)
#   htcondor   the HTCondor site against a real pool (scripts/htcondor.sh: Debian trixie chroot)
#   kubernetes the Kubernetes site against a real API server (scripts/kubernetes.sh: built from
#              Debian's source once, cached outside the repository)
#   dask       Dask on farside: interactive clusters (real schedulers, workers on pilots),
#              graph offload, the dimuon notebook; on SQLite and PostgreSQL
#   docs       the Python examples of the README and docs/ (Sybil) and the workflow notebooks, against a real gateway
#   browser    JupyterHub + configurable-http-proxy (scripts/hub.sh) + the OIDC provider
#              (scripts/oidc.sh), driven in headless Chromium (scripts/browser.sh)
#   deploy     the container images (scripts/images.sh: buildah), the Helm chart (helm and
#              kubectl from scripts/helm.sh) and its install into the test Kubernetes,
#              whose image node runs the images (scripts/kubernetes.sh image-node)
# With arguments, they go to one pytest run instead, e.g. scripts/test.sh -m "not postgres" -x
# FARSIDE_TEST_SUITES picks suites for an argument-less run (default: all seven).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FARSIDE_TEST_POSTGRES=${FARSIDE_TEST_POSTGRES:-$(bash scripts/postgres.sh)}
bash scripts/slurm.sh >/dev/null
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== docs are current"
.venv/bin/python -m farside_gateway.docgen --check
if [ "$#" -gt 0 ]; then
  echo "== pytest $*"
  exec .venv/bin/pytest "$@"
fi
for suite in ${FARSIDE_TEST_SUITES:-default dask docs htcondor kubernetes browser deploy}; do
  case "$suite" in
    default)
      echo "== pytest: default suite"
      .venv/bin/pytest --durations=25 \
        -m "not htcondor and not kubernetes and not browser and not dask and not docs and not deploy" ;;
    dask)
      echo "== pytest: Dask suite"
      .venv/bin/pytest --durations=10 -m "dask and not browser" ;;
    docs)
      echo "== pytest: docs suite"
      .venv/bin/pytest --durations=10 -m docs ;;
    htcondor)
      echo "== pytest: HTCondor suite"
      bash scripts/htcondor.sh
      .venv/bin/pytest -m htcondor ;;
    kubernetes)
      echo "== pytest: Kubernetes suite"
      bash scripts/kubernetes.sh
      .venv/bin/pytest -m kubernetes ;;
    browser)
      echo "== pytest: browser suite"
      bash scripts/hub.sh
      bash scripts/browser.sh
      .venv/bin/pytest -m browser ;;
    deploy)
      echo "== pytest: deploy suite"
      bash scripts/images.sh
      bash scripts/helm.sh >/dev/null
      bash scripts/kubernetes.sh image-node >/dev/null
      .venv/bin/pytest --durations=10 -m deploy ;;
    *) echo "unknown suite $suite (default, dask, docs, htcondor, kubernetes, browser, deploy)" >&2; exit 2 ;;
  esac
done
