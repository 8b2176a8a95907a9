"""Shared code for the hand-run benchmarks: a real gateway, its pilots, stats and output.

Each ``bench_*.py`` prints exactly one JSON line to stdout; everything else goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.harness import GatewayProcess, wait_until  # noqa: E402

__all__ = [
    "GatewayProcess",
    "emit",
    "local_site",
    "log",
    "percentile",
    "running_gateway",
    "summary_ms",
    "wait_for_pilots",
    "wait_until",
]

logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
)
_log = logging.getLogger("bench")


def log(message: str, *args: Any) -> None:
    _log.info(message, *args)


def local_site(**overrides: Any) -> dict[str, Any]:
    """One ``local`` site (one core per pilot); override min_warm, max_pilots, ..."""
    site: dict[str, Any] = {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "2 GiB",
        "min_warm": 1,
        "max_pilots": 1,
        "idle_timeout": 600,
    }
    site.update(overrides)
    return site


@contextlib.contextmanager
def running_gateway(
    database_url: str | None = None, keep: bool = False, **settings: Any
) -> Iterator[tuple[GatewayProcess, Any]]:
    """A started gateway in a temporary state dir, with an open ``farside.Gateway`` client.

    The client configuration is isolated from the developer's (``FARSIDE_CONFIG_DIR``).
    """
    tmp = tempfile.mkdtemp(prefix="farside-bench-")
    os.environ["FARSIDE_CONFIG_DIR"] = str(Path(tmp) / "client-config")
    os.environ.pop("FARSIDE_GATEWAY_URL", None)
    os.environ.pop("FARSIDE_TOKEN", None)
    gw = GatewayProcess(Path(tmp) / "gateway", database_url, **settings)
    log("starting gateway in %s", tmp)
    gw.start()
    client = None
    try:
        client = gw.client()
        log("gateway %s pid %s", gw.url, gw.proc.pid if gw.proc else None)
        yield gw, client
    finally:
        if client is not None:
            client.close()
        gw.cleanup()
        if not keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def wait_for_pilots(client: Any, count: int, timeout: float = 60.0) -> list[Any]:
    """Wait until ``count`` pilots have registered and are running."""

    def ready() -> list[Any]:
        pilots = [p for p in client.pilots() if p.state == "running" and p.registered]
        return pilots if len(pilots) >= count else []

    pilots: list[Any] = wait_until(ready, timeout=timeout, interval=0.1)
    log("%d pilot(s) running: %s", len(pilots), [p.batch_id for p in pilots])
    return pilots


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
        "n": len(ms),
    }


def emit(bench: str, figures: dict[str, Any]) -> None:
    """The one JSON line on stdout."""
    record = {
        "bench": bench,
        **figures,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
