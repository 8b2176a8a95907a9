"""Submit→result latency of a no-op task on a warm local pilot, beside dask.distributed.

    .venv/bin/python tests/benchmarks/bench_roundtrip.py [--n 300] [--warmup 20]

Farside: one gateway, one warm pilot (cores=1), ``task.submit().result()`` in sequence.
Dask: ``Client(LocalCluster(n_workers=1, threads_per_worker=1, processes=True))`` and
``client.submit(f, i, pure=False).result()`` in sequence, the same number of times.
Targets: p50(farside) / p50(dask) ≤ 5; farside p99 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from _common import emit, local_site, log, running_gateway, summary_ms, wait_for_pilots


def noop(i: int) -> int:
    return i


def time_calls(call: Callable[[int], Any], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        assert call(i) == i
    durations = []
    for i in range(n):
        t0 = time.perf_counter()
        result = call(i)
        durations.append(time.perf_counter() - t0)
        assert result == i, result
    return durations


def farside_roundtrips(n: int, warmup: int, database_url: str | None) -> list[float]:
    import farside

    site = local_site(min_warm=1, max_pilots=1)
    with running_gateway(database_url, sites=[site]) as (_, client):
        wait_for_pilots(client, 1)
        task = farside.task(noop, gateway=client)
        log("farside: %d warm-up + %d round trips", warmup, n)
        return time_calls(lambda i: task.submit(i).result(timeout=60), n, warmup)


def dask_roundtrips(n: int, warmup: int) -> list[float]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        log("dask: %d warm-up + %d round trips", warmup, n)
        # pure=False: every call is a new task, as every farside submit is a new job
        return time_calls(lambda i: client.submit(noop, i, pure=False).result(), n, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    fs = summary_ms(farside_roundtrips(args.n, args.warmup, args.database_url))
    log("farside: %s", fs)
    dk = summary_ms(dask_roundtrips(args.n, args.warmup))
    log("dask: %s", dk)
    ratio = fs["p50_ms"] / dk["p50_ms"]
    emit(
        "roundtrip",
        {
            "database": "postgres" if args.database_url else "sqlite",
            "farside": fs,
            "dask": dk,
            "p50_ratio": round(ratio, 2),
            "targets": {"p50_ratio_le_5": ratio <= 5, "farside_p99_le_50ms": fs["p99_ms"] <= 50},
        },
    )


if __name__ == "__main__":
    main()
