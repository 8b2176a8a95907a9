"""End-to-end throughput: N no-op tasks through one ``task.map`` on 2 warm pilots.

    .venv/bin/python tests/benchmarks/bench_throughput.py [--n 10000] [--database-url URL]

The clock runs from the ``map`` call (which submits everything in bulk) until the last
result has been iterated. Target: ≥ 2,000 tasks/s on SQLite.

Scouts are off by default here (this measures the pool, not sizing): with ``--scouts`` the
map's first 3 jobs run alone first, as a large map's do by default, which adds their round
trip plus up to one scouts pass (``reaper_interval``) before the avalanche.
"""

from __future__ import annotations

import argparse
import time

from _common import emit, local_site, log, running_gateway, wait_for_pilots


def noop(i: int) -> int:
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--pilots", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--timeout", type=float, default=150.0, help="give up after (s)")
    parser.add_argument("--scouts", action="store_true", help="keep the default scouts")
    args = parser.parse_args()

    import farside

    site = local_site(min_warm=args.pilots, max_pilots=args.pilots, cores=1)
    settings = {} if args.scouts else {"scouts": {"threshold": args.n + 1}}
    with running_gateway(args.database_url, sites=[site], **settings) as (_, client):
        wait_for_pilots(client, args.pilots)
        task = farside.task(noop, gateway=client)
        assert task.submit(-1).result(timeout=60) == -1  # function pickled, pilots warm

        log("map over %d", args.n)
        t0 = time.perf_counter()
        results = task.map(range(args.n))
        t_submitted = time.perf_counter()
        log("submitted in %.2fs", t_submitted - t0)
        deadline = t0 + args.timeout
        last_report = t0
        for done, future in enumerate(results.futures, 1):
            remaining = deadline - time.perf_counter()
            assert future.result(timeout=max(0.0, remaining)) == done - 1
            now = time.perf_counter()
            if now - last_report >= 5:
                log("%d/%d done, %.0f tasks/s so far", done, args.n, done / (now - t0))
                last_report = now
        elapsed = time.perf_counter() - t0

    rate = args.n / elapsed
    log("%d tasks in %.2fs: %.0f tasks/s", args.n, elapsed, rate)
    emit(
        "throughput",
        {
            "database": "postgres" if args.database_url else "sqlite",
            "n": args.n,
            "pilots": args.pilots,
            "scouts": args.scouts,
            "submit_s": round(t_submitted - t0, 3),
            "elapsed_s": round(elapsed, 3),
            "tasks_per_s": round(rate, 1),
            "targets": {"tasks_per_s_ge_2000": rate >= 2000},
        },
    )


if __name__ == "__main__":
    main()
