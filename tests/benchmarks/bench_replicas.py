"""Throughput with 1 and with 2 gateway replicas on one PostgreSQL database.

    .venv/bin/python tests/benchmarks/bench_replicas.py --database-url URL [--n 5000 --pilots 2]

Each round starts the replicas behind one TCP front (``tests/tcp_proxy.py``, as a Service
would be), pilots that know only the front (so their connections spread over the
replicas), and a client on the front; then times one ``task.map`` of N no-op tasks, from
the call until the last result has been iterated, as ``bench_throughput.py`` does. Each
round uses a fresh database made beside the given one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import GatewayProcess, emit, log, wait_for_pilots

from support.harness import batch_pilots, free_port, fresh_postgres_database
from support.tcp_proxy import TcpFront


def noop(i: int) -> int:
    return i


def one_round(url: str, replicas: int, n: int, pilots: int, workdir: Path) -> dict[str, float]:
    import farside

    ports = [free_port() for _ in range(replicas)]
    front = TcpFront([("127.0.0.1", p) for p in ports]).start()
    site = {"name": "local", "cores": 1, "memory": "2 GiB", "min_warm": 0, "max_pilots": 0}
    settings = {"sites": [site], "scouts": {"threshold": n + 1}, "public_url": front.url}
    gateways = [
        GatewayProcess(workdir / f"r{replicas}-{k}", url, **settings) for k in range(replicas)
    ]
    pilot_dir = workdir / f"pilots-{replicas}"
    pilot_dir.mkdir()
    try:
        for gateway, port in zip(gateways, ports, strict=True):
            gateway.start(port=port)
        options = ("--site", "local", "--cores", "1", "--idle-timeout", "600")
        with (
            batch_pilots(front.url, gateways[0].site_token, pilots, pilot_dir, *options),
            farside.Gateway(
                front.url, token=gateways[0].user_token, set_as_default=False
            ) as client,
        ):
            wait_for_pilots(client, pilots)
            task = farside.task(noop, gateway=client)
            assert task.submit(-1).result(timeout=60) == -1
            t0 = time.perf_counter()
            results = task.map(range(n))
            submitted = time.perf_counter() - t0
            for i, future in enumerate(results.futures):
                assert future.result(timeout=300) == i
            elapsed = time.perf_counter() - t0
    finally:
        for gateway in gateways:
            gateway.cleanup()
        front.close()
    log("%d replica(s): %d tasks in %.2fs: %.0f tasks/s", replicas, n, elapsed, n / elapsed)
    return {
        "submit_s": round(submitted, 3),
        "elapsed_s": round(elapsed, 3),
        "tasks_per_s": round(n / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="PostgreSQL (scripts/postgres.sh)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pilots", type=int, default=2)
    args = parser.parse_args()
    figures: dict[str, object] = {"n": args.n, "pilots": args.pilots, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="farside-bench-") as tmp:
        for replicas in (1, 2):
            with fresh_postgres_database(args.database_url, prefix="farside_bench") as url:
                figures[f"replicas_{replicas}"] = one_round(
                    url, replicas, args.n, args.pilots, Path(tmp)
                )
    emit("replicas", figures)


if __name__ == "__main__":
    main()
