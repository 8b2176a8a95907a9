"""The example ``farside up --example`` runs: a task, a map with live logs, a job list."""

from __future__ import annotations

import time

import farside


def run_example() -> None:
    with farside.Gateway() as gw:
        _run(gw)


def _run(gw: farside.Gateway) -> None:
    @farside.task(cores=1, memory="256 MiB", walltime="5m", gateway=gw)
    def square(x: int) -> int:
        print("squaring", x)
        return x * x

    started = time.perf_counter()
    fut = square.submit(3)
    print(f"[example] square(3) on a pilot = {fut.result(timeout=120)}", flush=True)
    print("[example] its log:", flush=True)
    for line in gw.logs(fut.job_id, follow=True):
        print(f"    {line}", flush=True)
    results = list(square.map(range(10)))
    print(f"[example] square.map(range(10)) = {results}", flush=True)
    finished = [j for j in gw.jobs(limit=11) if j.state == "finished"]
    print(
        f"[example] {len(finished)} jobs finished in {time.perf_counter() - started:.2f}s "
        f"on site(s) {sorted({j.site for j in finished if j.site})}",
        flush=True,
    )
