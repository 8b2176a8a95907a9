"""What a Dask user expects of a cluster object, checked on a real gateway and scheduler."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import dask
import httpx
import pytest
from distributed import Client
from websockets.sync.client import connect as ws_connect

import farside
from support.harness import GatewayProcess, farside_client, running_gateway, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

SITES = [
    {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "2 GiB",
        "min_warm": 0,
        "max_pilots": 2,
        "idle_timeout": 60,
    }
]
CLUSTERS = {"check_interval": 0.3, "client_timeout": 4.0}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    state = tmp_path_factory.mktemp("conventions") / "gateway"
    with running_gateway(state, sites=SITES, clusters=CLUSTERS) as gw:
        yield gw


@pytest.fixture
def gw(gateway: GatewayProcess) -> Iterator[farside.Gateway]:
    yield from farside_client(gateway)


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


def test_the_dashboard_is_served_through_the_gateway_to_its_owner_only(
    gateway: GatewayProcess, gw: farside.Gateway
) -> None:
    with gw.new_cluster(workers=0) as cluster:
        link = cluster.dashboard_link
        assert link is not None
        plain = cluster.info.dashboard_link
        assert plain == f"{gateway.url}/clusters/{cluster.name}/status"
        assert link.startswith(plain + "?ticket=")
        with httpx.Client(timeout=30) as browser:
            # the ticket becomes a cookie for this cluster's path, and leaves the address
            page = browser.get(link, follow_redirects=True)
            assert page.status_code == 200, page.text[:500]
            assert str(page.url) == plain
            assert "bokeh" in page.text.lower()
            # the page's own files come through with the cookie
            scripts = re.findall(rf'"(/clusters/{cluster.name}/static/js/bokeh[^"]+)"', page.text)
            assert scripts
            assert browser.get(f"{gateway.url}{scripts[0]}").status_code == 200
            assert browser.get(f"{plain.rsplit('/', 1)[0]}/statics/css/base.css").is_success
            # bokeh's websocket comes through too, with the same cookie
            # (bokeh's page names its session token; its script offers it as a subprotocol)
            (session,) = re.findall(r'"token":"([^"]+)"', page.text)[:1]
            ws_url = plain.replace("http://", "ws://") + "/ws"
            cookie = f"farside-dashboard={browser.cookies['farside-dashboard']}"
            with ws_connect(
                ws_url, additional_headers={"Cookie": cookie}, subprotocols=["bokeh", session]
            ) as ws:
                assert "ACK" in str(ws.recv(timeout=20))  # bokeh's first message
        # without the ticket or a token: refused; with the owner's token: served
        assert httpx.get(plain, timeout=30).status_code == 401
        auth = {"Authorization": f"Bearer {gateway.user_token}"}
        assert httpx.get(plain, headers=auth, timeout=30).status_code == 200
        # another user sees no such cluster, with a token or a forged ticket
        other = {"Authorization": f"Bearer {gateway.make_user_token('mallory')}"}
        assert httpx.get(plain, headers=other, timeout=30).status_code == 404
        forged = httpx.get(plain, params={"ticket": "fernet:nonsense"}, timeout=30)
        assert forged.status_code == 401
    # once the cluster is gone, so is its dashboard
    assert httpx.get(plain, headers=auth, timeout=30).status_code == 404
