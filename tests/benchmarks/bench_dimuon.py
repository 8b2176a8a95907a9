"""Dimuon events/s: a farside Dask cluster and graph offload, each against LocalCluster.

    .venv/bin/python tests/benchmarks/bench_dimuon.py [--files 8] [--events 500000]
                                                      [--workers 2] [--repeat 5]

The same generated files and the same cores for all: ``workers`` one-thread workers.
* cluster: the dask-awkward graph of ``notebooks/dimuon.ipynb`` (uproot.dask → events_mass
  per partition → histogram here) on ``gw.new_cluster(workers=N, cores=1)`` (warm
  pilots) vs ``LocalCluster(n_workers=N, threads_per_worker=1)``;
* offload: the delayed graph (process_file per file → merge_histograms) with
  ``scheduler=gw.offload`` vs the same graph on LocalCluster.
Each figure is the best of ``repeat`` runs after one warm-up; histograms must match.
Targets: cluster / LocalCluster ≥ 0.95; offload / LocalCluster ≥ 0.8.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import emit, local_site, log, running_gateway, wait_for_pilots


def best_of(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    result = run()  # warm-up: imports, file cache, worker start
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=8)
    # runs of ~2 s: shorter ones measure start-up noise more than throughput
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import dask
    import dask_awkward as dak
    import uproot
    from distributed import Client, LocalCluster

    from farside import datasets
    from farside.examples import dimuon

    data = Path(tempfile.mkdtemp(prefix="farside-dimuon-"))
    paths = datasets.make_dimuon_files(data, args.files, args.events, seed=7)
    total = args.files * args.events
    log("%d events in %d files under %s", total, len(paths), data)

    def masses() -> Any:
        events = uproot.dask({str(p): "Events" for p in paths}, filter_name="Muon_*")
        return dak.map_partitions(dimuon.events_mass, events)

    def merged() -> Any:
        # new keys each time (delayed calls are impure): no run reuses another's results
        per_file = [dask.delayed(dimuon.process_file)(str(p)) for p in paths]
        return dask.delayed(dimuon.merge_histograms)(per_file)

    def on_client(client: Client) -> Callable[[], Any]:
        def run() -> Any:
            (computed,) = client.compute([masses()], optimize_graph=False, sync=True)
            return dimuon.mass_histogram(computed)

        return run

    n = args.workers
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, processes=True) as local,
        Client(local) as client,
    ):
        local_cluster_s, local_hist = best_of(on_client(client), args.repeat)
        local_delayed_s, local_merged = best_of(
            lambda: client.compute(merged(), sync=True), args.repeat
        )
    log("LocalCluster: graph %.2f s, delayed %.2f s", local_cluster_s, local_delayed_s)

    site = local_site(min_warm=n, max_pilots=n, memory="3 GiB")
    with running_gateway(sites=[site]) as (_, gw):
        wait_for_pilots(gw, n)
        cluster = gw.new_cluster(workers=n, cores=1, memory="2 GiB")
        with cluster, Client(cluster) as client:
            client.wait_for_workers(n, timeout=120)
            farside_cluster_s, cluster_hist = best_of(on_client(client), args.repeat)
        assert cluster_hist == local_hist, "cluster and LocalCluster histograms differ"
        offload_s, offloaded = best_of(
            lambda: dask.compute(merged(), scheduler=gw.offload)[0], args.repeat
        )
        assert offloaded == local_merged, "offload and LocalCluster histograms differ"
    log("farside: cluster %.2f s, offload %.2f s", farside_cluster_s, offload_s)
    emit(
        "dimuon",
        {
            "events": total,
            "files": args.files,
            "workers": n,
            "local_cluster_events_per_s": round(total / local_cluster_s),
            "farside_cluster_events_per_s": round(total / farside_cluster_s),
            "cluster_ratio": round(local_cluster_s / farside_cluster_s, 3),
            "local_delayed_events_per_s": round(total / local_delayed_s),
            "offload_events_per_s": round(total / offload_s),
            "offload_ratio": round(local_delayed_s / offload_s, 3),
            "targets": {"cluster_ratio": 0.95, "offload_ratio": 0.8},
        },
    )


if __name__ == "__main__":
    main()
