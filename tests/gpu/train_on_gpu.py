"""The GPU check behind tests/gpu/run_on_device.sh: a gateway with one local site that has
the machine's GPUs, the MLP trained as a job with ``gpus=1``, and what the job and its
pilot saw. Exits non-zero, saying why, when the job did not run on the GPU or the pilot
reported no GPU use. Uses nothing but farside and the standard library (no pytest there)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import farside
from farside.examples.mlp import train

CONFIG = """
heartbeat_interval = 2.0

[[sites]]
name = "gpu"
plugin = "local"
cores = 4
memory = "32 GiB"
gpus = {gpus}
min_warm = 1
max_pilots = 1
"""


def start_gateway(state: Path, gpus: int) -> tuple[subprocess.Popen[bytes], str, str]:
    (state / "gateway.toml").write_text(CONFIG.format(gpus=gpus))
    log = (state / "gateway.log").open("wb")
    config = state / "gateway.toml"
    args = [sys.executable, "-m", "farside_gateway", "--config", str(config), "--state-dir"]
    args += [str(state), "--port", "0", "--token-dir", str(state / "tokens")]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    announce = state / "gateway.json"
    deadline = time.monotonic() + 60
    while not announce.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the gateway did not start:\n{(state / 'gateway.log').read_text()}")
        time.sleep(0.1)
    url = json.loads(announce.read_text())["url"]
    return proc, url, (state / "tokens" / "user.token").read_text().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of the site (0: a CPU check)")
    parser.add_argument("--epochs", type=int, default=10_000)
    args = parser.parse_args()
    started = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="farside-gpu-"))
    proc, url, token = start_gateway(state, args.gpus)
    try:
        with farside.Gateway(url, token) as gw:
            fit = farside.task(train, memory="16 GiB", walltime="10 minutes", gpus=args.gpus)
            future = fit.submit(hidden=256, layers=4, epochs=args.epochs, n=20_000)
            result = future.result(timeout=240)
            (attempt,) = gw.job(future.job_id).attempt_list
        summary = {
            "result": result,
            "site": attempt.site,
            "gpu_memory": attempt.gpu_memory,
            "gpu_utilization": attempt.gpu_utilization,
            "max_rss": attempt.max_rss,
            "wall_time": attempt.wall_time,
            "seconds_in_all": time.monotonic() - started,
        }
        print(json.dumps(summary, indent=2))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_run.json").write_text(json.dumps(summary, indent=2))
        problems = []
        if args.gpus and result["platform"] != "gpu":
            problems.append(f"the job ran on {result['platform']}, not the GPU")
        if args.gpus and result["cuda_visible_devices"] != "0":
            problems.append(f"the job saw CUDA_VISIBLE_DEVICES={result['cuda_visible_devices']}")
        if args.gpus and not attempt.gpu_memory:
            problems.append("the pilot reported no GPU memory for the job")
        if result["accuracy"] < 0.95:
            problems.append(f"accuracy {result['accuracy']:.3f} < 0.95")
        for problem in problems:
            print("FAILED:", problem, file=sys.stderr)
        return 1 if problems else 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
