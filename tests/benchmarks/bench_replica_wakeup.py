"""Replica wake-up: a job submitted on one gateway replica to its state event arriving on an
event stream held by another replica of the same PostgreSQL database (LISTEN/NOTIFY).

    .venv/bin/python tests/benchmarks/bench_replica_wakeup.py --database-url URL [--n 50]

The URL is a PostgreSQL database the benchmark may use (e.g. a fresh one on the server
scripts/postgres.sh starts). Both replicas run here with idle sites (no pilots), so what is
measured is the wake-up and the stream, not execution. Target: p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import emit, log, summary_ms

from farside_protocol.payload import dump_function, encode_call
from support.authz import sse_events
from support.harness import GatewayProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    idle = {"sites": [{"name": "local", "min_warm": 0, "max_pilots": 0}]}
    state = Path(tempfile.mkdtemp(prefix="farside-bench-"))
    first = GatewayProcess(state / "a", args.database_url, **idle).start()
    second = GatewayProcess(state / "b", args.database_url, **idle).start()
    auth = {"Authorization": f"Bearer {first.user_token}"}
    payload = base64.b64encode(encode_call(dump_function(abs), (-1,), {})).decode()
    arrivals: dict[int, float] = {}
    ready = threading.Event()

    def follow() -> None:
        with (
            httpx.Client(timeout=None) as http,
            http.stream("GET", f"{second.url}/api/v1/events", headers=auth) as stream,
        ):
            for event, data in sse_events(stream):
                if event == "hello":
                    ready.set()
                elif event == "jobs":
                    now = time.monotonic()
                    for e in json.loads(data)["events"]:
                        arrivals.setdefault(e["job_id"], now)
                    if len(arrivals) >= args.n:
                        return

    try:
        threading.Thread(target=follow, daemon=True).start()
        ready.wait(30)
        latencies = []
        with httpx.Client(base_url=first.url, headers=auth, timeout=30) as http:
            for _ in range(args.n):
                sent = time.monotonic()
                job = {"payload": payload, "resources": {"memory": "100 MB"}}
                (job_id,) = http.post("/api/v1/jobs", json={"jobs": [job]}).json()["job_ids"]
                deadline = sent + 20
                while job_id not in arrivals and time.monotonic() < deadline:
                    time.sleep(0.001)
                latencies.append(arrivals.get(job_id, deadline) - sent)
                time.sleep(0.05)
        log("wake-ups: %s", summary_ms(latencies))
    finally:
        first.cleanup()
        second.cleanup()
    figures = summary_ms(latencies)
    emit(
        "replica_wakeup",
        {"n": args.n, "latency": figures, "targets": {"p99_le_100ms": figures["p99_ms"] <= 100}},
    )


if __name__ == "__main__":
    main()
