"""``gw.new_cluster(workers=4)`` until 4 workers are ready, on warm pilots.

    .venv/bin/python tests/benchmarks/bench_cluster_start.py [--n 5] [--workers 4]

One gateway whose local site keeps ``workers`` one-core pilots warm. Each round times
``new_cluster`` (the scheduler listening, from a spare process) and then
``client.wait_for_workers(workers)`` (leases taken by pilots, Dask workers started on them
and registered), then closes the cluster and waits until the pilots are free again.
Target: median ≤ 2 s (dask-gateway's is < 10 s).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import emit, local_site, log, running_gateway, wait_for_pilots, wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    from distributed import Client

    site = local_site(min_warm=args.workers, max_pilots=args.workers, memory="1 GiB")
    created, ready = [], []
    with running_gateway(sites=[site], clusters={"check_interval": 0.5}) as (_, gw):
        wait_for_pilots(gw, args.workers)
        for round_ in range(args.n + 1):  # the first round warms the pilots' workers
            t0 = time.perf_counter()
            cluster = gw.new_cluster(workers=args.workers, cores=1, memory="512 MiB")
            t1 = time.perf_counter()
            with Client(cluster) as client:
                client.wait_for_workers(args.workers, timeout=120)
                t2 = time.perf_counter()
            cluster.close()
            log(
                "round %d: created %.3f s, %d workers ready %.3f s",
                round_,
                t1 - t0,
                args.workers,
                t2 - t0,
            )
            if round_:
                created.append(t1 - t0)
                ready.append(t2 - t0)
            wait_until(lambda: not any(p.running_jobs for p in gw.pilots()), timeout=60)
    emit(
        "cluster_start",
        {
            "workers": args.workers,
            "new_cluster_s_median": round(statistics.median(created), 3),
            "ready_s_median": round(statistics.median(ready), 3),
            "ready_s_max": round(max(ready), 3),
            "rounds": args.n,
            "target_s": 2.0,
        },
    )


if __name__ == "__main__":
    main()
