"""The stock dask_gateway client (from PyPI, unchanged) against a farside gateway: list, new,
connect, options, scale, adapt, shutdown, work through the SNI proxy, the dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

dask_gateway = pytest.importorskip("dask_gateway")

from dask_gateway.auth import BasicAuth, GatewayAuth, JupyterHubAuth  # noqa: E402

from support.harness import GatewayProcess, running_gateway, wait_until  # noqa: E402

# dask_gateway.Gateway.__del__ raises after close() (its bug): the root conftest quiets it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

SITES = [
    {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "2 GiB",
        "min_warm": 0,
        "max_pilots": 3,
        "idle_timeout": 60,
    }
]
CLUSTERS = {"check_interval": 0.3, "client_timeout": 4.0, "proxy_port": 0}


class BearerAuth(GatewayAuth):  # type: ignore[misc]
    """What a deployment would configure as gateway.auth.type; here, for a farside token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def pre_request(self, resp: object) -> tuple[dict[str, str], None]:
        return {"Authorization": f"Bearer {self.token}"}, None


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    state = tmp_path_factory.mktemp("daskgw") / "gateway"
    with running_gateway(state, sites=SITES, clusters=CLUSTERS) as gw:
        yield gw


def _proxy_port(gateway: GatewayProcess) -> int:
    for line in gateway.log_path.read_text().splitlines():
        if "dask-gateway scheduler proxy on" in line:
            return int(line.rsplit(":", 1)[1])
    raise AssertionError("the gateway did not start its scheduler proxy")


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[object]:
    gw = dask_gateway.Gateway(
        f"{gateway.url}/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{_proxy_port(gateway)}",
        auth=BasicAuth(password=gateway.user_token),
    )
    yield gw
    for report in gw.list_clusters():
        gw.stop_cluster(report.name)
    gw.close()


def test_the_stock_client_runs_work_on_pilots(gateway: GatewayProcess, client: object) -> None:
    gw = client
    options = gw.cluster_options()
    assert {"worker_cores", "worker_memory"} <= set(options)
    options.worker_memory = 1.5
    with gw.new_cluster(options) as cluster:
        assert [r.name for r in gw.list_clusters()] == [cluster.name]
        cluster.scale(2)
        with cluster.get_client() as dask_client:
            dask_client.wait_for_workers(2, timeout=90)
            futures = dask_client.map(lambda x: x * x, range(20))
            assert dask_client.submit(sum, futures).result(timeout=60) == sum(
                x * x for x in range(20)
            )
        # the farside view of the same cluster: the options became its workers' shape
        farside_view = httpx.get(
            f"{gateway.url}/api/v1/clusters/{cluster.name}",
            headers={"Authorization": f"Bearer {gateway.user_token}"},
        ).json()
        (group,) = farside_view["groups"]
        assert group["spec"]["memory"] == int(1.5 * 1024**3)
        assert group["spec"]["workers"] == 2
        # the dashboard link goes through the gateway and opens in a browser
        assert cluster.dashboard_link.startswith(f"{gateway.url}/dask-gateway/clusters/")
        page = httpx.get(cluster.dashboard_link, follow_redirects=True, timeout=30)
        assert page.status_code == 200
        assert "bokeh" in page.text.lower()
        # connect from another client (another kernel), then shut down from there
        again = gw.connect(cluster.name)
        assert again.scheduler_address == cluster.scheduler_address
        again.shutdown()
    wait_until(lambda: not gw.list_clusters(), timeout=30)
    (stopped,) = gw.list_clusters(status="STOPPED")
    assert stopped.name == cluster.name


def test_adapt_is_done_by_the_gateway(client: object) -> None:
    gw = client
    cluster = gw.new_cluster()
    try:
        cluster.adapt(minimum=1, maximum=2)
        with cluster.get_client() as dask_client:
            dask_client.wait_for_workers(1, timeout=90)
            # work for more than one worker: the gateway grows the cluster to its maximum
            futures = dask_client.map(lambda x: time.sleep(0.5) or x, range(40))
            wait_until(lambda: len(dask_client.scheduler_info()["workers"]) == 2, timeout=90)
            assert sum(dask_client.gather(futures)) == sum(range(40))
    finally:
        cluster.shutdown()


def test_errors_and_auth_speak_dask_gateway(gateway: GatewayProcess, client: object) -> None:
    gw = client
    with pytest.raises(ValueError, match="bad cluster options"):
        gw.new_cluster(worker_cores=0)
    with pytest.raises(ValueError, match="no cluster"):
        gw.connect("nobody-00000000")
    base = f"{gateway.url}/dask-gateway/api/v1/clusters/"
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    # any way dask-gateway's clients send a token works: Bearer, JupyterHubAuth's, Basic
    hub_style = JupyterHubAuth(api_token=gateway.user_token).pre_request(None)[0]
    assert httpx.get(base, headers=hub_style).status_code == 200
    bearer = BearerAuth(gateway.user_token).pre_request(None)[0]
    assert httpx.get(base, headers=bearer).json() == {}
    assert json.loads(httpx.get(f"{gateway.url}/dask-gateway/api/version").text)["version"]


def test_a_notebook_configured_as_the_hub_configures_it_runs_unchanged(
    gateway: GatewayProcess,
) -> None:
    from farside_hub._config import dask_gateway_variables

    variables = dask_gateway_variables(gateway.url, f"gateway://127.0.0.1:{_proxy_port(gateway)}")
    assert variables["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    # outside a hub there is no hub API token: Basic with the farside token stands in
    variables |= {
        "DASK_GATEWAY__AUTH__TYPE": "basic",
        "DASK_GATEWAY__AUTH__KWARGS__PASSWORD": gateway.user_token,
    }
    notebook = (
        "from dask_gateway import Gateway\n"
        "gw = Gateway()\n"  # everything from the environment, as in a daskhub notebook
        "with gw.new_cluster() as cluster:\n"
        "    print('listed', [c.name for c in gw.list_clusters()] == [cluster.name])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", notebook],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "listed True" in done.stdout, done.stderr[-2000:]
