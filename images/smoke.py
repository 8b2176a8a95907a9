"""Smoke-run one farside image from inside it: ``python /smoke.py IMAGE``.

scripts/images.sh runs this with ``buildah run`` after each build. It uses only what the
image itself holds, and exits non-zero with the reason when the image cannot do its job:

* gateway: ``farside gateway`` starts on a free port and answers ``/api/v1/health``;
* pilot: ``python -m farside_pilot --version`` prints the version of the farside inside;
* hub: JupyterHub, KubeSpawner and farside_hub import, and ``jupyterhub --version`` runs;
* notebook-*: the notebook's imports work and ``jupyterhub-singleuser`` exists; the ML and
  GPU notebooks also import their libraries.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

NOTEBOOK_IMPORTS = ["farside", "farside.widgets", "distributed", "ipywidgets", "ipykernel"]
ML_IMPORTS = ["optuna", "pyhf", "jax", "uproot", "awkward", "hist"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway() -> str:
    port = _free_port()
    state = tempfile.mkdtemp(prefix="farside-smoke-")
    cmd = ["farside", "gateway", "--port", str(port), "--state-dir", state]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/api/v1/health"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise SystemExit(f"the gateway exited with {proc.returncode}:\n{output}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return f"gateway answers {url}: {response.read().decode()}"
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"the gateway did not answer {url} within 60 s")
    finally:
        proc.terminate()
        proc.wait(30)


def pilot() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "farside_pilot", "--version"], capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout.startswith("farside-pilot "):
        raise SystemExit(f"the pilot did not print its version: {out.stdout}{out.stderr}")
    import farside_protocol

    if farside_protocol.__version__ not in out.stdout:
        raise SystemExit(f"version mismatch: {out.stdout!r} vs {farside_protocol.__version__}")
    return out.stdout.strip()


def hub() -> str:
    for name in ("jupyterhub", "kubespawner", "farside_hub", "oauthenticator"):
        importlib.import_module(name)
    out = subprocess.run(["jupyterhub", "--version"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"jupyterhub --version failed: {out.stdout}{out.stderr}")
    return f"jupyterhub {out.stdout.strip()} with kubespawner and farside_hub"


def notebook(extra: list[str]) -> str:
    for name in NOTEBOOK_IMPORTS + extra:
        importlib.import_module(name)
    if shutil.which("jupyterhub-singleuser") is None:
        raise SystemExit("jupyterhub-singleuser is not on PATH")
    import farside

    return f"farside {farside.__version__} imports with {', '.join(NOTEBOOK_IMPORTS + extra)}"


def main(image: str) -> None:
    checks = {
        "gateway": gateway,
        "pilot": pilot,
        "hub": hub,
        "notebook-cpu": lambda: notebook([]),
        "notebook-ml": lambda: notebook(ML_IMPORTS),
        "notebook-gpu": lambda: notebook(ML_IMPORTS),
    }
    if image not in checks:
        raise SystemExit(f"no smoke test for {image!r}; known: {', '.join(checks)}")
    print(f"smoke {image}: {checks[image]()}")


if __name__ == "__main__":
    main(sys.argv[1])
