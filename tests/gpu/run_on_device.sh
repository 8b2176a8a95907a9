#!/usr/bin/env bash
# Run ON the GPU machine (the device tool, with carry=[".whl"], after tests/gpu/prepare.sh
# here): the GPU notebook's training (farside.examples.mlp) as a farside job with gpus=1,
# through a real gateway and a real pilot of a local site that has the machine's GPU.
# Checks that it ran on the GPU the pilot gave it, and that the pilot reported its GPU
# memory and utilisation; within 5 minutes. Writes gpu_run.json to $OUT (or /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/farside-site .whl/*.whl
export PYTHONPATH=/tmp/farside-site PATH="/tmp/farside-site/bin:$PATH" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
timeout 300 python3 tests/gpu/train_on_gpu.py --out "${OUT:-/tmp}"
