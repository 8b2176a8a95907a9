"""A Dask cluster outlives the gateway replica that started its scheduler: another replica
on the same PostgreSQL database adopts it, with its scheduler, data and workers intact."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy
from distributed import Client

import farside
from farside_protocol.clusters import ClusterInfo
from support.harness import GatewayProcess, batch_pilots, free_port, postgres_database, wait_until
from support.tcp_proxy import TcpFront

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask, pytest.mark.postgres]

SETTINGS = {
    "sites": [
        {"name": "local", "cores": 2, "memory": "4 GiB", "min_warm": 0, "max_pilots": 0},
    ],
    "heartbeat_interval": 1.0,
    "heartbeat_timeout": 10.0,
    "clusters": {
        "check_interval": 0.3,
        "client_timeout": 120.0,
        "encryption_keys": ["one key for every replica"],
        "adopt_after": 2.0,
        "orphan_grace": 30.0,
        "spare_schedulers": 0,
    },
}


class Replicas:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.url = url
        ports = free_port(), free_port()
        self.front = TcpFront([("127.0.0.1", port) for port in ports]).start()
        self.first = GatewayProcess(tmp_path / "a", url, public_url=self.front.url, **SETTINGS)
        self.second = GatewayProcess(tmp_path / "b", url, public_url=self.front.url, **SETTINGS)
        self.first.start(port=ports[0])
        self.second.start(port=ports[1])
        self.engine = sqlalchemy.create_engine(url)
        # batch pilots: they know only the front, like a Service's
        options = ("--site", "local", "--cores", "2", "--memory", "4 GiB", "--idle-timeout", "300")
        self.pilots = contextlib.ExitStack()
        self.pilots.enter_context(
            batch_pilots(self.front.url, self.first.site_token, 2, tmp_path, *options)
        )

    def manager(self, cluster: str) -> str:
        with self.engine.connect() as conn:
            query = sqlalchemy.text("select instance from clusters where name = :n")
            return str(conn.execute(query, {"n": cluster}).scalar_one())

    def failure_report(self) -> str:
        return self.first.failure_report() + "\n" + self.second.failure_report()

    def close(self) -> None:
        self.pilots.close()
        self.first.cleanup()
        self.second.cleanup()
        self.front.close()
        self.engine.dispose()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:

    for url in postgres_database():
        pair = Replicas(tmp_path, url)
        try:
            yield pair
        finally:
            pair.close()


def test_a_cluster_outlives_the_replica_that_started_it(replicas: Replicas) -> None:
    first, second = replicas.first, replicas.second
    gw_first = farside.Gateway(first.url, token=first.user_token, set_as_default=False)
    gw_second = farside.Gateway(second.url, token=first.user_token, set_as_default=False)
    try:
        cluster = gw_first.new_cluster(workers=1, cores=1, memory="1 GiB")
        name = cluster.name
        starter = replicas.manager(name)
        client = Client(cluster.scheduler_address, security=cluster.security)
        try:
            client.wait_for_workers(1, timeout=60)
            kept = client.submit(lambda: 42, pure=False)  # a result held on a worker
            assert kept.result(timeout=30) == 42

            first.kill()  # SIGKILL: no hand-over, its schedulers' stdin just closes

            # the other replica notices within adopt_after and takes the cluster on
            adopter = wait_until(
                lambda: (m := replicas.manager(name)) != starter and m, timeout=30, interval=0.2
            )
            assert adopter.endswith(str((second.state_dir).resolve()))
            # the same scheduler, the same data, reached by the same client
            assert kept.result(timeout=30) == 42
            assert client.submit(pow, 2, 10).result(timeout=30) == 1024
            # and the adopter manages it: scaling up starts a second worker
            again = gw_second.connect(name)
            assert again.refresh().state == "running"
            again.scale(2)
            client.wait_for_workers(2, timeout=60)
            # past orphan_grace's first check: the scheduler is kept alive by the adopter
            assert client.submit(lambda: 7, pure=False).result(timeout=30) == 7

            again.shutdown()
            info = wait_until(
                lambda: (i := again.refresh()).state in ("stopped", "failed") and i,
                timeout=30,
                interval=0.2,
            )
            assert info.state == "stopped", info.reason
            assert info.reason == "closed by its owner"
        finally:
            client.close()
    finally:
        gw_first.close()
        gw_second.close()


def test_a_cluster_whose_scheduler_died_with_its_replica_is_marked_failed(
    replicas: Replicas,
) -> None:
    first = replicas.first
    gw_first = farside.Gateway(first.url, token=first.user_token, set_as_default=False)
    gw_second = farside.Gateway(replicas.second.url, token=first.user_token, set_as_default=False)
    try:
        cluster = gw_first.new_cluster(workers=0, cores=1, memory="1 GiB")
        name = cluster.name
        port = int(cluster.scheduler_address.rsplit(":", 1)[1])
        (scheduler,) = [
            psutil.Process(c.pid)
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
        ]
        first.kill()
        scheduler.kill()  # gone with its replica, as when their pod is deleted

        def ended() -> ClusterInfo | None:
            infos = [c for c in gw_second.clusters(ended=True) if c.name == name]
            return infos[0] if infos and infos[0].state == "failed" else None

        info = wait_until(ended, timeout=30, interval=0.3)
        assert "is gone, and its scheduler ended with it" in (info.reason or "")
    finally:
        gw_first.close()
        gw_second.close()


def test_a_replica_that_stops_cleanly_hands_its_clusters_over(replicas: Replicas) -> None:
    first = replicas.first
    gw_first = farside.Gateway(first.url, token=first.user_token, set_as_default=False)
    gw_second = farside.Gateway(replicas.second.url, token=first.user_token, set_as_default=False)
    try:
        cluster = gw_first.new_cluster(workers=1, cores=1, memory="1 GiB")
        name = cluster.name
        with Client(cluster.scheduler_address, security=cluster.security) as client:
            client.wait_for_workers(1, timeout=60)
            starter = replicas.manager(name)
            first.stop()  # SIGTERM, as in a rolling upgrade: another replica is alive
            wait_until(lambda: replicas.manager(name) != starter, timeout=30, interval=0.2)
            assert client.submit(lambda: 5, pure=False).result(timeout=30) == 5
        infos = {c.name: c for c in gw_second.clusters()}
        assert infos[name].state == "running"
    finally:
        gw_first.close()
        gw_second.close()
