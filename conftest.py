"""The documentation's Python examples run as tests (Sybil), against a real gateway.

Every ```python block of the README and of docs/ runs, in order, one namespace per page,
with a gateway of the local platform's shape (SQLite, a local site, the dask-gateway proxy)
whose address and token are in the environment, as `farside up` leaves them. A block that
cannot run here (it needs JupyterHub, Kubernetes or another site) is marked in the page
with ``<!-- skip: next -->`` and says so nearby. These tests are the ``docs`` suite.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))

VARIABLES = (
    "FARSIDE_GATEWAY_URL",
    "FARSIDE_TOKEN",
    "FARSIDE_CONFIG_DIR",
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "DASK_GATEWAY__AUTH__TYPE",
    "DASK_GATEWAY__AUTH__KWARGS__PASSWORD",
)
SITES = [
    {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "3 GiB",
        "min_warm": 1,
        "max_pilots": 3,
        "idle_timeout": 120,
    }
]


@pytest.fixture(scope="session")
def docs_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from support.harness import GatewayProcess

    state = tmp_path_factory.mktemp("docs")
    gateway = GatewayProcess(
        state / "gateway", sites=SITES, clusters={"proxy_port": 0, "check_interval": 0.5}
    )
    gateway.start()
    saved = {k: os.environ.get(k) for k in VARIABLES}
    proxy = next(
        line.rsplit(" ", 1)[1]
        for line in gateway.log_path.read_text().splitlines()
        if "dask-gateway scheduler proxy on" in line
    )
    os.environ.update(
        FARSIDE_GATEWAY_URL=gateway.url,
        FARSIDE_TOKEN=gateway.user_token,
        FARSIDE_CONFIG_DIR=str(state / "config"),
        # as `farside up` prints them, for the page on the stock dask-gateway client
        DASK_GATEWAY__ADDRESS=f"{gateway.url}/dask-gateway",
        DASK_GATEWAY__PROXY_ADDRESS=f"gateway://{proxy}",
        DASK_GATEWAY__AUTH__TYPE="basic",
        DASK_GATEWAY__AUTH__KWARGS__PASSWORD=gateway.user_token,
    )
    # Dask reads DASK_* variables when it is imported, which may have happened already
    dask.config.refresh()
    try:
        yield gateway
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        dask.config.refresh()
        gateway.cleanup()


def _page_setup(namespace: dict[str, object]) -> None:
    namespace["__name__"] = "__main__"  # as in a notebook: functions travel by value
    # files a page writes (the dimuon data) go to a directory of its own
    namespace["_cwd_before"] = os.getcwd()
    os.chdir(tempfile.mkdtemp(prefix="farside-docs-"))


def _page_teardown(namespace: dict[str, object]) -> None:
    """Close what a page left open: Dask clients, then clusters, then gateways."""
    from dask_gateway import GatewayCluster as DaskGatewayCluster
    from distributed import Client

    import farside._gateway as gateways
    from farside import Gateway, WorkflowRun
    from farside._cluster import FarsideCluster

    for kind in (Client, FarsideCluster, DaskGatewayCluster, Gateway):
        for value in list(namespace.values()):
            if isinstance(value, kind):
                value.close()
            elif kind is Gateway and isinstance(value, WorkflowRun):
                value.gateway.close()
    # the default gateway a task made for itself when the page named none
    if gateways._default is not None:
        gateways._default.close()
    os.chdir(str(namespace["_cwd_before"]))


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md", "docs/how-to/*.md", "docs/reference/client.md"],
    path=str(ROOT),
    fixtures=["docs_gateway"],
    setup=_page_setup,
    teardown=_page_teardown,
).pytest()


def pytest_configure(config: pytest.Config) -> None:
    _quiet_dask_gateway_del()


def _quiet_dask_gateway_del() -> None:
    """dask-gateway's ``Gateway.__del__`` (2026.3.0) calls ``close()`` again after its loop
    has stopped, and raises; as an unraisable exception that would fail whichever test is
    running when the object is collected. Only that RuntimeError is silenced."""
    try:
        from dask_gateway import Gateway
    except ImportError:
        return
    original = Gateway.__del__

    def __del__(self: Any) -> None:
        with contextlib.suppress(RuntimeError):
            original(self)

    Gateway.__del__ = __del__


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".md":
            item.add_marker(pytest.mark.docs)
            item.add_marker(pytest.mark.timeout(600))
