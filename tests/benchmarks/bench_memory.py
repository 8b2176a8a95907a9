"""Resident memory: the gateway holding 100,000 queued jobs, and an idle pilot.

    .venv/bin/python tests/benchmarks/bench_memory.py [--jobs 100000] [--chunk 5000]

Gateway: a site with ``max_pilots=0, min_warm=0`` so nothing runs; no-op jobs are submitted
through ``task.map(..., chunksize=5000)``; then a few list queries (``jobs``, ``jobs(state=
'queued')``, ``job``, ``sites``, ``pilots``) and a few acquires by a pilot registered by hand
(site token, over HTTP) are made, and the gateway's RSS is read with psutil. A sampler also
records the peak RSS seen during submission.

Pilot: a second gateway with one warm pilot runs a few jobs; after the pilot has sat idle, the
RSS of the pilot process and of its worker children are read (reported separately).
Targets: gateway ≤ 500 MB; idle pilot ≤ 80 MB.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from typing import Any

import psutil
from _common import emit, local_site, log, running_gateway, wait_for_pilots

MB = 1_000_000


def noop(i: int) -> int:
    return i


def rss_mb(proc: psutil.Process) -> float:
    return round(proc.memory_info().rss / MB, 1)


class PeakSampler(threading.Thread):
    def __init__(self, proc: psutil.Process, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak = proc, interval, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._halt.wait(self.interval)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return round(self.peak / MB, 1)


def poke_acquire(gw: Any, times: int = 3, max_jobs: int = 100) -> int:
    """Register a pilot by hand with the site token and acquire a few batches (no wait)."""
    with gw.http(gw.site_token) as http:
        reg = {
            "site": "local",
            "cores": 1,
            "memory": "2 GiB",
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "version": "bench",
        }
        r = http.post("/pilots", json=reg)
        r.raise_for_status()
        pilot_id, token = r.json()["pilot_id"], r.json()["token"]
    taken = 0
    with gw.http(token) as http:
        for _ in range(times):
            body = {"max_jobs": max_jobs, "cores": 1, "memory": "2 GiB", "wait": 0}
            r = http.post(f"/pilots/{pilot_id}/acquire", json=body)
            r.raise_for_status()
            taken += len(r.json()["jobs"])
    return taken


def gateway_memory(n: int, chunk: int, database_url: str | None) -> dict[str, Any]:
    import farside

    site = local_site(min_warm=0, max_pilots=0)
    with running_gateway(database_url, sites=[site]) as (gw, client):
        proc = psutil.Process(gw.proc.pid)  # type: ignore[union-attr]
        time.sleep(1.0)
        start = rss_mb(proc)
        log("gateway RSS at start: %.1f MB", start)
        task = farside.task(noop, gateway=client)
        sampler = PeakSampler(proc)
        sampler.start()
        t0 = time.perf_counter()
        results = task.map(range(n), chunksize=chunk)
        submit_s = time.perf_counter() - t0
        peak_submit = sampler.stop()
        after_submit = rss_mb(proc)
        log(
            "%d jobs submitted in %.1fs; RSS %.1f MB (peak %.1f)",
            n,
            submit_s,
            after_submit,
            peak_submit,
        )
        sampler = PeakSampler(proc)
        sampler.start()
        t0 = time.perf_counter()
        listed = len(client.jobs(limit=1000))
        queued = len(client.jobs(state="queued", limit=10_000))
        client.jobs(group=results.group, limit=10_000)
        client.job(results.job_ids[n // 2])
        client.sites()
        client.pilots()
        taken = poke_acquire(gw)
        query_s = time.perf_counter() - t0
        peak_query = sampler.stop()
        time.sleep(1.0)
        after_queries = rss_mb(proc)
        full = proc.memory_full_info()
        log(
            "listed %d, queued page %d, acquired %d in %.2fs; RSS %.1f MB (peak %.1f)",
            listed,
            queued,
            taken,
            query_s,
            after_queries,
            peak_query,
        )
        return {
            "jobs": n,
            "chunk": chunk,
            "submit_s": round(submit_s, 2),
            "queries_s": round(query_s, 2),
            "rss_start_mb": start,
            "rss_after_submit_mb": after_submit,
            "rss_peak_during_submit_mb": peak_submit,
            "rss_peak_during_queries_mb": peak_query,
            "rss_after_queries_mb": after_queries,
            "uss_after_queries_mb": round(full.uss / MB, 1),
        }


def pilot_memory(jobs: int, idle: float, database_url: str | None) -> dict[str, Any]:
    import farside

    site = local_site(min_warm=1, max_pilots=1, idle_timeout=600)
    with running_gateway(database_url, sites=[site]) as (_, client):
        (pilot,) = wait_for_pilots(client, 1)
        proc = psutil.Process(int(pilot.batch_id))
        fresh = rss_mb(proc)
        task = farside.task(noop, gateway=client)
        assert list(task.map(range(jobs))) == list(range(jobs))
        log("pilot ran %d jobs; idling %.0fs", jobs, idle)
        time.sleep(idle)
        children = proc.children(recursive=True)
        pilot_rss = rss_mb(proc)
        workers = [rss_mb(c) for c in children]
        log("idle pilot %d: %.1f MB; workers %s", proc.pid, pilot_rss, workers)
        return {
            "jobs_run": jobs,
            "idle_s": idle,
            "pilot_rss_fresh_mb": fresh,
            "pilot_rss_mb": pilot_rss,
            "workers": len(workers),
            "workers_rss_mb": workers,
            "pilot_plus_workers_mb": round(pilot_rss + sum(workers), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--pilot-jobs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    gateway = gateway_memory(args.jobs, args.chunk, args.database_url)
    pilot = pilot_memory(args.pilot_jobs, args.idle, args.database_url)
    emit(
        "memory",
        {
            "database": "postgres" if args.database_url else "sqlite",
            "gateway": gateway,
            "pilot": pilot,
            "targets": {
                "gateway_le_500mb": gateway["rss_after_queries_mb"] <= 500,
                "idle_pilot_le_80mb": pilot["pilot_rss_mb"] <= 80,
            },
        },
    )


if __name__ == "__main__":
    main()
