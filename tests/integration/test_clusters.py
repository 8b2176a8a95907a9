"""Interactive Dask clusters on real gateways, schedulers and pilots (local sites).

The ``gpu`` site is a local site that *declares* one GPU per slot (there is no GPU on the
test machine): what is tested is the routing — GPU workers land there, carry the Dask
resource ``GPU`` and take ``resources={"GPU": 1}`` tasks — not CUDA.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from distributed import Client

import farside
from farside_protocol import Conflict, InvalidRequest
from farside_protocol.clusters import ClusterCredentials, ClusterInfo, WorkerStop
from support.harness import GatewayProcess, running_gateway, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

SITES = [
    {
        "name": "cpu",
        "plugin": "local",
        "cores": 2,
        "memory": "4 GiB",
        "min_warm": 2,
        "max_pilots": 4,
        "idle_timeout": 60,
    },
    {
        "name": "gpu",
        "plugin": "local",
        "cores": 1,
        "memory": "2 GiB",
        "gpus": 1,
        "gpu_model": "T4",
        "min_warm": 0,
        "max_pilots": 1,
        "idle_timeout": 60,
    },
]
CLUSTERS = {
    "check_interval": 0.3,
    "client_timeout": 4.0,
    "max_clusters_per_user": 3,
    "max_cores_per_user": 8,
    "encryption_keys": ["a passphrase for the tests"],
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    state = tmp_path_factory.mktemp("clusters") / "gateway"
    with running_gateway(state, sites=SITES, clusters=CLUSTERS) as gw:
        yield gw


@pytest.fixture
def gw(gateway: GatewayProcess) -> Iterator[farside.Gateway]:
    client = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
    yield client
    for info in client.clusters():  # nothing a test left running spills into the next
        client._api.request("DELETE", f"/clusters/{info.name}")
    client.close()


def _live(cluster: Any) -> list[Any]:
    return [w for w in cluster.refresh().workers if not w.state.terminal]


def test_a_cluster_runs_dask_work_on_pilots(gateway: GatewayProcess, gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=2, cores=1, memory="1 GiB") as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            total = client.submit(sum, client.map(lambda x: x * x, range(10))).result()
            assert total == sum(x * x for x in range(10))
            # the workers are pilots' jobs: leases of this cluster on the cpu site
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            leases = {w.name: w for w in _live(cluster)}
            assert names == set(leases)
            assert {w.site for w in leases.values()} == {"cpu"}
            job = gw.job(next(iter(leases.values())).job_id)
            assert (job.resources.cores, job.resources.memory) == (1, 1024**3)
            # listed as jobs of their own kind, so a user can tell them from tasks
            assert job.kind == "dask-worker"
            workers = gw.jobs(kind="dask-worker", group=cluster.name)
            assert {j.id for j in workers} == {w.job_id for w in leases.values()}
            assert not [j for j in gw.jobs(kind="function") if j.group == cluster.name]
            # the pool holds the cluster's TLS key sealed, in its row and in every lease;
            # the pilots got it opened (their workers joined), and so does the owner
            with sqlite3.connect(gateway.state_dir / "farside.db") as db:
                (sealed,) = db.execute(
                    "select tls_key from clusters where name = ?", (cluster.name,)
                ).fetchone()
                payloads = [
                    p
                    for (p,) in db.execute(
                        "select payload from jobs where group_name = ?", (cluster.name,)
                    )
                ]
            assert sealed.startswith("fernet:")
            assert payloads
            assert not [p for p in payloads if b"PRIVATE KEY" in p]
            creds = gw._api.get(f"/clusters/{cluster.name}/credentials", ClusterCredentials)
            assert "PRIVATE KEY" in creds.tls_key
        assert cluster.dashboard_link
        # through the gateway, with a ticket for a browser (test_cluster_conventions: more)
        assert f"/clusters/{cluster.name}/status?ticket=" in cluster.dashboard_link
        page = httpx.get(cluster.dashboard_link, timeout=30, follow_redirects=True)
        assert page.status_code == 200
    # close() returns once the gateway has stopped it
    assert (cluster.info.state, cluster.info.reason) == ("stopped", "closed by its owner")
    ended = {c.name: c for c in gw.clusters(ended=True)}[cluster.name]
    assert (ended.state, ended.reason) == ("stopped", "closed by its owner")
    assert all(w.state.terminal for w in ended.workers)


def test_a_client_without_the_clusters_certificate_is_refused(gw: farside.Gateway) -> None:
    from distributed.security import Security

    with gw.new_cluster(workers=0) as cluster:
        stranger = Security.temporary()  # a valid certificate, but not the cluster's
        with pytest.raises((OSError, TimeoutError)):
            Client(cluster.scheduler_address, security=stranger, timeout=5)
        with pytest.raises((OSError, TimeoutError, TypeError)):
            Client(cluster.scheduler_address.replace("tls://", "tcp://"), timeout=5)


def test_scale_up_and_down_retires_surplus_workers(gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=1) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        kept = client.scatter(list(range(100)), broadcast=False)
        cluster.scale(3)
        client.wait_for_workers(3, timeout=60)
        assert len(_live(cluster)) == 3
        cluster.scale(1)
        wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
        wait_until(lambda: len(_live(cluster)) == 1, timeout=30)
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
        oldest = min(_live(cluster), key=lambda w: w.job_id)  # not what scale(2) would pick
        kept = client.scatter(list(range(50)), workers=[by_name[oldest.name]])
        before = {w.job_id for w in cluster.refresh().workers}
        info = gw._api.post(
            f"/clusters/{cluster.name}/workers/stop", WorkerStop(workers=[oldest.name]), ClusterInfo
        )
        assert info.groups[0].spec.workers == 2
        wait_until(
            lambda: {w.name for w in _live(cluster)} == set(by_name) - {oldest.name}, timeout=60
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
        wait_until(lambda: len(_live(cluster)) == 3, timeout=60)
        assert client.gather(futures) == list(range(30))
        # Adaptive retires idle workers one call at a time; the target follows each
        wait_until(
            lambda: len(_live(cluster)) == 1 and cluster.info.groups[0].spec.workers == 1,
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
        sites = {w.group: w.site for w in _live(cluster)}
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


def test_a_lease_whose_key_this_gateway_cannot_open_goes_back_alone(
    gateway: GatewayProcess, gw: farside.Gateway
) -> None:
    """Replicas with different ``encryption_keys``: the lease a replica cannot open is given
    back as a system error with the reason; the pilot lives on, and the cluster's
    replacement worker (sealed with a key this gateway has) joins."""
    from farside_gateway.clusters.sealing import Sealer

    admin = farside.Gateway(
        gateway.url, token=gateway.make_user_token("ops", admin=True), set_as_default=False
    )
    admin.set_site_status("gpu", "offline")  # the GPU lease waits while the test re-seals it
    try:
        cluster = gw.new_cluster(
            workers=0, groups={"gpu": {"workers": 1, "gpus": 1, "memory": "1 GiB"}}
        )
        (lease,) = wait_until(lambda: gw.jobs(kind="dask-worker", group=cluster.name))
        with sqlite3.connect(gateway.state_dir / "farside.db") as db:
            (payload,) = db.execute("select payload from jobs where id = ?", (lease.id,)).fetchone()
            body = json.loads(payload)
            body["tls_key"] = Sealer(["a key no replica here has"]).seal("not the real key")
            resealed = json.dumps(body).encode()
            db.execute(
                "update jobs set payload = ?, payload_size = ? where id = ?",
                (resealed, len(resealed), lease.id),
            )
        admin.set_site_status("gpu", "online")
        with cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            bad = gw.job(lease.id)
            assert bad.state == "failed"
            assert "sealed with an encryption key this gateway does not have" in (bad.error or "")
            assert bad.error_class == "system"
            gpu_pilots = [p for p in gw.pilots() if p.site == "gpu"]
            assert gpu_pilots
            assert all(p.state == "running" for p in gpu_pilots)
    finally:
        admin.set_site_status("gpu", "online")
        admin.close()


def test_a_group_no_site_can_run_is_refused_with_the_reason(gw: farside.Gateway) -> None:
    with pytest.raises(InvalidRequest, match=r"worker group 'default' can run on no site.*GiB"):
        gw.new_cluster(workers=1, memory="64 GiB")
    with pytest.raises(InvalidRequest, match="group name"):
        gw.new_cluster(groups={"Big Group!": {"workers": 1}})
    assert gw.clusters() == []


def test_connect_from_another_kernel_and_list(gateway: GatewayProcess, gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=1) as cluster:
        other = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
        try:
            assert [c.name for c in other.clusters()] == [cluster.name]
            again = other.connect(cluster.name)
            with Client(again) as client:
                client.wait_for_workers(1, timeout=60)
                assert client.submit(lambda: 7).result() == 7
            again.close()  # a connected cluster only disconnects
            assert other.clusters()[0].state == "running"
        finally:
            other.close()


def test_another_user_cannot_see_or_use_the_cluster(
    gateway: GatewayProcess, gw: farside.Gateway
) -> None:
    with gw.new_cluster(workers=0) as cluster:
        bob = farside.Gateway(
            gateway.url, token=gateway.make_user_token("bob"), set_as_default=False
        )
        try:
            assert bob.clusters() == []
            for method, path in [
                ("GET", f"/clusters/{cluster.name}"),
                ("GET", f"/clusters/{cluster.name}/credentials"),
                ("DELETE", f"/clusters/{cluster.name}"),
            ]:
                response = bob._api.client.request(method, f"/api/v1{path}")
                assert response.status_code == 404, (method, path, response.text)
        finally:
            bob.close()
        assert cluster.refresh().state == "running"


def test_per_user_limits(gw: farside.Gateway) -> None:
    made = [gw.new_cluster(workers=0) for _ in range(3)]
    try:
        with pytest.raises(Conflict, match="most allowed is 3"):
            gw.new_cluster(workers=0)
        with pytest.raises(Conflict, match="most one user may have is 8"):
            made[0].scale(9)
        assert made[0].refresh().groups[0].spec.workers == 0
    finally:
        for cluster in made:
            cluster.close()


def test_a_cluster_whose_client_is_gone_stops_when_idle(gw: farside.Gateway) -> None:
    cluster = gw.new_cluster(workers=1, shutdown_on_close=False)
    name = cluster.name
    wait_until(lambda: any(w.state.value == "running" for w in _live(cluster)), timeout=60)
    cluster.close()  # no more heartbeats; the cluster itself stays
    info = wait_until(
        lambda: next(
            (c for c in gw.clusters(ended=True) if c.name == name and c.state == "stopped"), None
        ),
        timeout=60,
    )
    assert "no client heartbeat" in (info.reason or "")
    assert all(w.state.terminal for w in info.workers)


def test_idle_timeout_stops_the_cluster(gw: farside.Gateway) -> None:
    cluster = gw.new_cluster(workers=1, idle_timeout=2)
    info = wait_until(
        lambda: next(
            (c for c in gw.clusters(ended=True) if c.name == cluster.name and c.state == "stopped"),
            None,
        ),
        timeout=60,
    )
    assert info.reason == "idle for 2s: the scheduler stopped itself"
    cluster.close()


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
        (first,) = _live(cluster)
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


def test_users_cannot_submit_worker_leases_themselves(gateway: GatewayProcess) -> None:
    with gateway.http(gateway.user_token) as http:
        response = http.post("/jobs", json={"jobs": [{"kind": "dask-worker", "payload": "e30="}]})
    assert response.status_code == 422
    assert "gw.new_cluster" in response.json()["error"]["message"]


def test_a_restarted_gateway_ends_its_clusters(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gw", sites=SITES[:1], clusters=CLUSTERS)
    gateway.start()
    try:
        gw = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
        cluster = gw.new_cluster(workers=1, shutdown_on_close=False)
        wait_until(lambda: any(w.state.value == "running" for w in _live(cluster)), timeout=60)
        scheduler_pids = [
            p.pid
            for p in psutil.Process(gateway.proc.pid).children(recursive=True)
            if "farside_gateway.clusters.scheduler" in " ".join(p.cmdline())
        ]
        assert scheduler_pids
        cluster.close()
        gw.close()
        gateway.kill()
        # the schedulers notice their gateway is gone (stdin closed) and end
        wait_until(
            lambda: (
                not any(
                    psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                    for p in scheduler_pids
                )
            ),
            timeout=30,
        )
        gateway.start()
        gw = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
        (info,) = gw.clusters(ended=True)
        assert info.state == "stopped"
        assert "restarted" in (info.reason or "")
        assert all(w.state.terminal for w in info.workers)
        gw.close()
    finally:
        gateway.cleanup()


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


def test_cli_lists_and_stops_clusters(
    gateway: GatewayProcess, gw: farside.Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    from farside._cli import main

    conn = ["--url", gateway.url, "--token", gateway.user_token]
    cluster = gw.new_cluster(workers=0, shutdown_on_close=False)
    cluster.close()
    assert main(["clusters", *conn]) == 0
    listed = capsys.readouterr().out
    assert cluster.name in listed
    assert "default=0" in listed
    assert main(["cluster-stop", cluster.name, *conn]) == 0
    assert capsys.readouterr().out.strip() == (
        f"cluster {cluster.name} is stopped: closed by its owner"
    )
    assert main(["clusters", *conn]) == 0
    assert cluster.name not in capsys.readouterr().out
    assert main(["cluster-stop", "no-such-cluster", *conn]) == 1
    assert "no cluster 'no-such-cluster' of yours" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_cluster_on_postgresql(make_gateway: Any) -> None:
    """The cluster lifecycle on PostgreSQL (the other tests here use SQLite)."""
    gateway = make_gateway(sites=SITES[:1], clusters=CLUSTERS)
    gw = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
    try:
        with gw.new_cluster(workers=2) as cluster, Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            assert client.submit(lambda: 6 * 7).result() == 42
            cluster.scale(1)
            wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
        (info,) = gw.clusters(ended=True)
        assert info.state == "stopped"
        assert all(w.state.terminal for w in info.workers)
    finally:
        gw.close()


def test_a_hub_profile_sets_the_clusters_defaults(
    gw: farside.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ML+GPU profile's FARSIDE_DEFAULT_GPUS / FARSIDE_DEFAULT_ENV reach new_cluster."""
    monkeypatch.setenv("FARSIDE_DEFAULT_GPUS", "1")
    with gw.new_cluster(workers=0) as cluster:
        assert cluster.info.groups[0].spec.gpus == 1
    with gw.new_cluster(workers=0, gpus=0) as cluster:  # what the user says wins
        assert cluster.info.groups[0].spec.gpus == 0
    monkeypatch.setenv("FARSIDE_DEFAULT_ENV", "ml")
    with pytest.raises(InvalidRequest, match="environment"):
        gw.new_cluster(workers=0)  # no site here offers the profile's environment
