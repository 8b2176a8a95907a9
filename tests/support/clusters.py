"""The gateway of the interactive-cluster tests (``tests/integration/test_clusters.py``,
``test_cluster_workers.py`` and ``test_cluster_access.py``): its sites, its ``[clusters]``
settings and the fixtures each of those modules has.

The ``gpu`` site is a local site that *declares* one GPU per slot (there is no GPU on the
test machine): what is tested is the routing — GPU workers land there, carry the Dask
resource ``GPU`` and take ``resources={"GPU": 1}`` tasks — not CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import farside
from support.harness import GatewayProcess, running_gateway

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


def cluster_fixtures() -> tuple[Any, Any]:
    """A cluster test module's fixtures, ``gateway, gw = cluster_fixtures()`` at its top:
    ``gateway``, one gateway with these sites and settings for the module, and ``gw``, the
    user's client on it, which deletes the clusters a test left running."""

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

    return gateway, gw


def live(cluster: Any) -> list[Any]:
    """The cluster's workers that have not ended."""
    return [w for w in cluster.refresh().workers if not w.state.terminal]
