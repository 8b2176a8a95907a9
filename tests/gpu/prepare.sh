#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before tests/gpu/run_on_device.sh: puts into .whl/ the
# wheels the GPU machine lacks (it reaches no package index): farside itself, and the
# gateway's dependencies that its image does not hold (its Python is 3.12; it has JAX with
# CUDA, numpy, httpx, cloudpickle, tqdm, prometheus-client, fsspec). The versions are this
# checkout's .venv's, so what runs there is what the test suite ran here.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
.venv/bin/python -m pip wheel -q --no-deps -w .whl .
MISSING="pydantic pydantic-core annotated-types typing-inspection httpx-sse platformdirs
fastapi starlette uvicorn sqlalchemy greenlet alembic mako pyjwt cryptography cffi pycparser
psycopg psycopg-binary opentelemetry-api annotated-doc kr8s httpx-ws python-box python-jsonpath
cachetools wsproto exceptiongroup packaging pyyaml click markupsafe websockets"
specs=()
for name in $MISSING; do
  version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  if [ -z "$version" ]; then echo "prepare.sh: $name is not in .venv" >&2; exit 1; fi
  specs+=("$name==$version")
done
platforms=()
for n in 17 27 28 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${specs[@]}"
du -sh .whl
