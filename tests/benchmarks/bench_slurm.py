"""Slurm site: time to a first result, cold and warm; and how many pilots a map provisions.

Needs the Slurm of ``scripts/slurm.sh`` (run it first). Prints two JSON lines:

* ``slurm_first_result``: seconds from ``submit`` of a no-op task to its result on a Slurm
  site with no pilots yet (cold: sbatch, Slurm scheduling, pilot start, registration) and on
  a site with a warm, registered pilot (``min_warm = 1``).
* ``slurm_overshoot``: for maps of 1, 10, 100 and 1000 short tasks on a site with
  ``max_pilots = 16``, the pilots submitted (distinct pilot records, each one Slurm job)
  against the pilots needed, ``min(jobs, max_pilots)`` for 1-core tasks on 1-core slots.

    .venv/bin/python tests/benchmarks/bench_slurm.py [--cold 3 --warm 10 --sizes 1,10,100,1000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import uuid
from typing import Any

from _common import emit, log, running_gateway, wait_for_pilots, wait_until

import farside
from farside_protocol.models import PilotInfo
from support.slurm import slurm_site as test_slurm_site


def slurm_site(**overrides: Any) -> dict[str, Any]:
    """The tests' Slurm site, named for the benchmark, with room for a map's pilots."""
    bench = {"name": f"bench-{uuid.uuid4().hex[:6]}", "max_pilots": 16, "idle_timeout": 5}
    return test_slurm_site(**{**bench, **overrides})


def all_pilots(gw: Any) -> list[PilotInfo]:
    with gw.http(gw.user_token) as http:
        response = http.get("/pilots", params={"all": "true"})
        response.raise_for_status()
        return [PilotInfo.model_validate(p) for p in response.json()]


def noop(x: int) -> int:
    return x


def first_result(runs: int, warm: int) -> dict[str, Any]:
    cold: list[float] = []
    for i in range(runs):
        with running_gateway(sites=[slurm_site()]) as (_, client):
            task = farside.task(gateway=client, memory="100 MB")(noop)
            start = time.perf_counter()
            assert task.submit(i).result(timeout=120) == i
            cold.append(time.perf_counter() - start)
            log("cold run %d: %.2f s", i, cold[-1])
    hot: list[float] = []
    with running_gateway(sites=[slurm_site(min_warm=1, max_pilots=1)]) as (_, client):
        wait_for_pilots(client, 1, timeout=120)
        task = farside.task(gateway=client, memory="100 MB")(noop)
        task.submit(-1).result(timeout=60)  # the pilot's first job starts its worker
        for i in range(warm):
            start = time.perf_counter()
            assert task.submit(i).result(timeout=60) == i
            hot.append(time.perf_counter() - start)
    return {
        "cold_s": [round(s, 3) for s in cold],
        "cold_median_s": round(statistics.median(cold), 3),
        "warm_median_s": round(statistics.median(hot), 4),
        "warm_max_s": round(max(hot), 4),
    }


def overshoot(sizes: list[int], max_pilots: int) -> dict[str, Any]:
    rows = []
    for n in sizes:
        site = slurm_site(max_pilots=max_pilots)
        with running_gateway(sites=[site]) as (gw, client):
            task = farside.task(gateway=client, memory="100 MB")(noop)
            start = time.perf_counter()
            assert list(task.map(range(n))) == list(range(n))
            elapsed = time.perf_counter() - start
            pilots = all_pilots(gw)
            used = {j.pilot_id for j in client.jobs(limit=n)}
            needed = math.ceil(min(n, max_pilots))
            rows.append(
                {
                    "jobs": n,
                    "needed": needed,
                    "submitted": len(pilots),
                    "slurm_jobs": len({p.batch_id for p in pilots if p.batch_id}),
                    "ran_a_job": len(used & {p.id for p in pilots}),
                    "seconds": round(elapsed, 2),
                }
            )
            log("map of %d: %s", n, rows[-1])
            # the next size starts from a quiet cluster: these pilots leave first
            wait_until(lambda: not client.pilots(), timeout=120, interval=0.5)
    return {"max_pilots": max_pilots, "maps": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=int, default=3, help="cold runs (a gateway each)")
    parser.add_argument("--warm", type=int, default=10, help="round trips on the warm pilot")
    parser.add_argument("--sizes", default="1,10,100,1000", help="map sizes, comma-separated")
    parser.add_argument("--max-pilots", type=int, default=16)
    args = parser.parse_args()
    emit("slurm_first_result", first_result(args.cold, args.warm))
    sizes = [int(s) for s in args.sizes.split(",")]
    emit("slurm_overshoot", overshoot(sizes, args.max_pilots))


if __name__ == "__main__":
    main()
