"""Interactive Dask clusters on real gateways, schedulers and pilots (local sites): a cluster's
life, from the work it runs to how it ends (closed, its client gone, idle, its gateway
restarted), seen from another kernel, the CLI and a hub profile, and on PostgreSQL.

A cluster's workers are tested in ``test_cluster_workers.py``, who may reach and use one in
``test_cluster_access.py``; the gateway the three modules start is ``support.clusters``'.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from distributed import Client

import farside
from farside_protocol import InvalidRequest
from farside_protocol.clusters import ClusterCredentials
from support.clusters import CLUSTERS, SITES, cluster_fixtures, live
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

gateway, gw = cluster_fixtures()


def test_a_cluster_runs_dask_work_on_pilots(gateway: GatewayProcess, gw: farside.Gateway) -> None:
    with gw.new_cluster(workers=2, cores=1, memory="1 GiB") as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            total = client.submit(sum, client.map(lambda x: x * x, range(10))).result()
            assert total == sum(x * x for x in range(10))
            # the workers are pilots' jobs: leases of this cluster on the cpu site
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            leases = {w.name: w for w in live(cluster)}
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


def test_a_cluster_whose_client_is_gone_stops_when_idle(gw: farside.Gateway) -> None:
    cluster = gw.new_cluster(workers=1, shutdown_on_close=False)
    name = cluster.name
    wait_until(lambda: any(w.state.value == "running" for w in live(cluster)), timeout=60)
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


def test_a_restarted_gateway_ends_its_clusters(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gw", sites=SITES[:1], clusters=CLUSTERS)
    gateway.start()
    try:
        gw = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
        cluster = gw.new_cluster(workers=1, shutdown_on_close=False)
        wait_until(lambda: any(w.state.value == "running" for w in live(cluster)), timeout=60)
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
