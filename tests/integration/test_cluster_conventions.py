"""What a Dask user expects of a cluster object, checked on a real gateway and scheduler."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dask
import pytest
from distributed import Client

import farside
from harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

SITES = [{"name": "local", "plugin": "local", "cores": 1, "memory": "2 GiB", "min_warm": 0,
          "max_pilots": 2, "idle_timeout": 60}]  # fmt: skip
CLUSTERS = {"check_interval": 0.3, "client_timeout": 4.0}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("conventions") / "gateway", sites=SITES, clusters=CLUSTERS
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.cleanup()


@pytest.fixture
def gw(gateway: GatewayProcess) -> Iterator[farside.Gateway]:
    client = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
    yield client
    client.close()


def test_close_closes_the_clients_of_the_cluster(
    gw: farside.Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = gw.new_cluster(workers=0)
    made = cluster.get_client()
    assert cluster.get_client() is made  # the same client again, as dask-gateway does
    own = Client(cluster, set_as_default=False)
    caplog.set_level(logging.INFO, logger="distributed.client")
    cluster.close()
    assert made.status == "closed"
    # a client made from the cluster object sees it closing and closes itself
    wait_until(lambda: own.status == "closed", timeout=10)
    assert not [r for r in caplog.records if "Reconnecting" in r.getMessage()]


def test_dask_configuration_gives_the_clusters_defaults(gw: farside.Gateway) -> None:
    settings = {
        "farside.cluster.memory": "1500 MiB",
        "farside.cluster.walltime": "2 hours",
        "farside.cluster.idle-timeout": 900,
    }
    with dask.config.set(settings):
        with gw.new_cluster() as cluster:
            (group,) = cluster.info.groups
            assert (group.spec.memory, group.spec.walltime) == (1500 * 1024**2, 7200)
            assert (group.spec.workers, group.spec.cores) == (0, 1)  # the shipped defaults
            assert cluster.info.idle_timeout == 900
        # an argument wins over the configuration
        with gw.new_cluster(memory="1 GiB") as cluster:
            assert cluster.info.groups[0].spec.memory == 1024**3
