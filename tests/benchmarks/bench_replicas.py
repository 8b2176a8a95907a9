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
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from _common import GatewayProcess, emit, log, wait_for_pilots

from tcp_proxy import TcpFront


def noop(i: int) -> int:
    return i


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    import sqlalchemy

    name = f"farside_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sqlalchemy.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_round(url: str, replicas: int, n: int, pilots: int, workdir: Path) -> dict[str, float]:
    import farside

    ports = [free_port() for _ in range(replicas)]
    front = TcpFront([("127.0.0.1", p) for p in ports]).start()
    site = {"name": "local", "cores": 1, "memory": "2 GiB", "min_warm": 0, "max_pilots": 0}
    settings = {"sites": [site], "scouts": {"threshold": n + 1}, "public_url": front.url}
    gateways = [
        GatewayProcess(workdir / f"r{replicas}-{k}", url, **settings) for k in range(replicas)
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for gateway, port in zip(gateways, ports, strict=True):
            gateway.start(port=port)
        env = {**os.environ, "FARSIDE_PILOT_TOKEN": gateways[0].site_token}
        for k in range(pilots):
            command = [sys.executable, "-m", "farside_pilot", "--gateway-url", front.url]
            command += ["--site", "local", "--cores", "1", "--idle-timeout", "600"]
            command += ["--workdir", str(workdir / f"pilot-{replicas}-{k}")]
            procs.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
        client = farside.Gateway(front.url, token=gateways[0].user_token, set_as_default=False)
        try:
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
            client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
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
            with fresh_database(args.database_url) as url:
                figures[f"replicas_{replicas}"] = one_round(
                    url, replicas, args.n, args.pilots, Path(tmp)
                )
    emit("replicas", figures)


if __name__ == "__main__":
    main()
