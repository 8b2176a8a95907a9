"""A cluster's workers on real gateways, schedulers and pilots (local sites): scaled up and
down, stopped by name and adapted (retired, their data kept), in groups on the sites that
fit them (the ``gpu`` site's, see ``support.clusters``), logged, replaced when one dies, and
shown in the cluster's widget.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from distributed import Client

import farside
from farside_protocol import InvalidRequest
from farside_protocol.clusters import ClusterInfo, WorkerStop
from support.clusters import cluster_fixtures, live
from support.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

gateway, gw = cluster_fixtures()


def test_scale_up_and_down_retires_surplus_workers(gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=1) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        kept = client.scatter(list(range(100)), broadcast=False)
        cluster.scale(3)
        client.wait_for_workers(3, timeout=60)
        assert len(live(cluster)) == 3
        cluster.scale(1)
        wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
        wait_until(lambda: len(live(cluster)) == 1, timeout=30)
        ended = [w for w in cluster.refresh().workers if w.state.terminal]
        assert len(ended) == 2
        assert all("scaled down" in (w.error or "") for w in ended)
        # retired, not killed: the data they held moved to the worker that stays
        assert client.gather(kept) == list(range(100))


def test_stopping_named_workers_retires_those_and_replaces_none(gw: farside.Gateway) -> None:
    # what adapt() does through FarsideCluster.scale_down: the gateway picks no other worker
    with gw.new_cluster(workers=3) as cluster, Client(cluster) as client:
        client.wait_for_workers(3, timeout=60)
        by_name = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
        oldest = min(live(cluster), key=lambda w: w.job_id)  # not what scale(2) would pick
        kept = client.scatter(list(range(50)), workers=[by_name[oldest.name]])
        before = {w.job_id for w in cluster.refresh().workers}
        info = gw._api.post(
            f"/clusters/{cluster.name}/workers/stop", WorkerStop(workers=[oldest.name]), ClusterInfo
        )
        assert info.groups[0].spec.workers == 2
        wait_until(
            lambda: {w.name for w in live(cluster)} == set(by_name) - {oldest.name}, timeout=60
        )
        wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, timeout=60)
        # retired, not killed: its data moved to the others; and no lease was added
        assert client.gather(kept) == list(range(50))
        time.sleep(1.0)  # a few reconcile passes (check_interval 0.3 s)
        assert {w.job_id for w in cluster.refresh().workers} == before


def test_adapt_grows_with_work_and_shrinks_when_idle(gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=0) as cluster, Client(cluster) as client:
        cluster.adapt(minimum=1, maximum=3, interval="200ms", wait_count=3)
        client.wait_for_workers(1, timeout=60)

        def slow(x: int) -> int:
            time.sleep(1.0)
            return x

        futures = client.map(slow, range(30))
        wait_until(lambda: len(live(cluster)) == 3, timeout=60)
        assert client.gather(futures) == list(range(30))
        # Adaptive retires idle workers one call at a time; the target follows each
        wait_until(
            lambda: len(live(cluster)) == 1 and cluster.info.groups[0].spec.workers == 1,
            timeout=60,
        )
        leases = cluster.refresh().workers
        ended = [w for w in leases if w.state.terminal]
        assert len(ended) >= 2, leases
        assert all(w.state.value != "failed" for w in ended), leases
        # the gateway heard of each scale-down before the worker closed: none was replaced
        # on the way down (a lease started and then cancelled again)
        assert len(leases) == 3, leases


def test_gpu_group_gets_gpu_tasks(gw: farside.Gateway) -> None:
    cluster = gw.new_cluster(
        workers=1, groups={"gpu": {"workers": 1, "gpus": 1, "memory": "1 GiB"}}
    )
    with cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        sites = {w.group: w.site for w in live(cluster)}
        assert sites == {"default": "cpu", "gpu": "gpu"}
        gpu_worker = next(
            addr
            for addr, w in client.scheduler_info()["workers"].items()
            if w["name"].startswith("gpu-")
        )
        assert client.scheduler_info()["workers"][gpu_worker]["resources"] == {"GPU": 1}
        where = client.submit(lambda: os.environ.get("FARSIDE_SITE"), resources={"GPU": 1})
        assert where.result() == "gpu"
        who = client.who_has(where)
        assert next(iter(who.values())) == (gpu_worker,)


def test_a_group_no_site_can_run_is_refused_with_the_reason(gw: farside.Gateway) -> None:
    with pytest.raises(InvalidRequest, match=r"worker group 'default' can run on no site.*GiB"):
        gw.new_cluster(workers=1, memory="64 GiB")
    with pytest.raises(InvalidRequest, match="group name"):
        gw.new_cluster(groups={"Big Group!": {"workers": 1}})
    assert gw.clusters() == []


def test_worker_logs_and_a_dead_worker_says_why(gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=1) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)

        def shout() -> int:
            print("hello from a worker", flush=True)
            return os.getpid()

        pid = client.submit(shout).result()
        lines = wait_until(
            lambda: [ln for ln in gw.logs(cluster=cluster.name) if "hello from a worker" in ln],
            timeout=30,
        )
        (first,) = live(cluster)
        assert lines[0].startswith(f"[{first.name}] ")
        from farside.widgets import LogView

        @farside.task(gateway=gw)
        def chatter(x: int) -> int:
            print("hello from a task", flush=True)
            return x

        # a map may carry the cluster's name as its group: its tasks are not workers
        assert list(chatter.map([1, 2], group=cluster.name)) == [1, 2]
        view = LogView(gw, cluster=cluster)
        try:
            wait_until(lambda: any("hello from a worker" in e.text for e in view.lines), 30)
            assert {e.job_id for e in view.lines} == {first.job_id}
        finally:
            view.close()
        os.kill(pid, signal.SIGKILL)  # the worker process dies under the pilot
        dead = wait_until(
            lambda: next(
                (w for w in cluster.refresh().workers if w.name == first.name and w.state.terminal),
                None,
            ),
            timeout=60,
        )
        assert dead.state.value == "failed"
        assert "SIGKILL" in (dead.error or "")
        # the group's target stands: a new lease replaces the dead worker
        client.wait_for_workers(1, timeout=60)
        assert client.submit(lambda: 1).result() == 1


def test_the_widget_shows_workers_by_site_and_state(gw: farside.Gateway) -> None:
    from farside.widgets import ClusterWidget

    # pinned: a GPU pilot left warm by another test could take a CPU worker too
    with gw.new_cluster(workers=1, site="cpu") as cluster, Client(cluster) as client:
        widget = cluster._widget()
        assert isinstance(widget, ClusterWidget)
        client.wait_for_workers(1, timeout=60)
        # the worker may reach the scheduler before its pilot's "running" report reaches the
        # gateway, so the lease can still read "assigned" for a moment
        wait_until(
            lambda: (
                "<th>running</th>" in widget.table.value
                and "<td><b>cpu</b></td><td>1</td>" in widget.table.value
            ),
            timeout=30,
        )
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        # the widget refreshes itself: no call from the test
        wait_until(lambda: "<td><b>cpu</b></td><td>2</td>" in widget.table.value, timeout=30)
        wait_until(
            lambda: "<span class='farside-connected'>2</span>" in widget.headline.value,
            timeout=30,
        )
        assert "default: 2 workers of 1 cores" in widget.headline.value
