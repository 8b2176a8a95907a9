"""Where a cluster's worker leases land: on pilots that can start them now, never fetched
ahead by a busy pilot (a real gateway, scheduler and one-core local pilots)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from distributed import Client

import farside
from support.harness import farside_client, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

# as `farside up` has it: one-core pilots started for the work that waits
SITES = [
    {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "2 GiB",
        "min_warm": 1,
        "max_pilots": 3,
        "idle_timeout": 120,
    }
]
CLUSTERS = {"check_interval": 0.3, "client_timeout": 4.0}


@pytest.fixture
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[farside.Gateway]:
    state = tmp_path_factory.mktemp("placement") / "gateway"
    with running_gateway(state, sites=SITES, clusters=CLUSTERS) as gateway:
        yield from farside_client(gateway)


def test_worker_leases_are_not_fetched_ahead_after_short_tasks(gw: farside.Gateway) -> None:
    @farside.task(gateway=gw, memory="100 MB")
    def noop(x: int) -> int:
        return x

    # short tasks teach the warm pilot to fetch ahead (prefetch grows)
    assert list(noop.map(range(150))) == list(range(150))
    with gw.new_cluster(workers=2, cores=1, memory="1 GiB") as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=90)
        leases = [j for j in gw.jobs(kind="dask-worker", group=cluster.name)]
        held = Counter(j.pilot_id for j in leases if not j.state.terminal)
        # each one-core pilot holds the one lease it runs; none waits behind another
        assert sorted(held.values()) == [1, 1], leases
        assert all(j.state == "running" for j in leases if not j.state.terminal)
