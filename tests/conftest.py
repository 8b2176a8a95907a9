"""Shared fixtures: real gateways on SQLite, and on PostgreSQL when the marker is selected.

The PostgreSQL variant needs the server that ``scripts/postgres.sh`` starts; its DSN comes
from ``FARSIDE_TEST_POSTGRES`` (``scripts/test.sh`` sets it). Each test gets a database of
its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import GatewayProcess, fresh_postgres_database

POSTGRES_ENV = "FARSIDE_TEST_POSTGRES"


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the developer's real farside configuration."""
    monkeypatch.setenv("FARSIDE_CONFIG_DIR", str(tmp_path / "client-config"))
    monkeypatch.delenv("FARSIDE_GATEWAY_URL", raising=False)
    monkeypatch.delenv("FARSIDE_TOKEN", raising=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries the logs of the gateways it used (any fixture value
    with a ``failure_report()``): CI shows the report, and the logs are gone after."""
    report = yield
    if report.when == "call" and report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            describe = getattr(value, "failure_report", None)
            if callable(describe):
                try:
                    text = describe()
                except Exception as exc:  # the report must not hide the failure itself
                    text = f"(no report: {exc!r})"
                report.sections.append((f"logs of fixture {name}", text))
    return report


def _postgres_database() -> Iterator[str]:
    dsn = os.environ.get(POSTGRES_ENV)
    if not dsn:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: start PostgreSQL with scripts/postgres.sh and export "
            "the DSN it prints (scripts/test.sh does both)"
        )
    with fresh_postgres_database(dsn) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the state dir) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        yield from _postgres_database()


@pytest.fixture
def make_gateway(
    tmp_path: Path, database_url: str | None
) -> Iterator[Callable[..., GatewayProcess]]:
    """Factory: ``make_gateway(**settings)`` starts a gateway; all are cleaned up after."""
    made: list[GatewayProcess] = []

    def make(start: bool = True, **settings: Any) -> GatewayProcess:
        gw = GatewayProcess(tmp_path / f"gateway{len(made)}", database_url, **settings)
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.cleanup()


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """A running gateway with two warm local pilots."""
    return make_gateway()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Any]:
    gw = gateway.client()
    yield gw
    gw.close()


# ------------------------------------------------------------ the deploy suite's cluster
# (here, not in tests/deploy/conftest.py: a second module named conftest would shadow this
# one for the tests that import _postgres_database from it)


@pytest.fixture(scope="session")
def image_cluster() -> Iterator[Any]:
    """The test Kubernetes with its image node (scripts/kubernetes.sh image-node)."""
    from kubernetes_support import Cluster, start_cluster

    cluster = Cluster(start_cluster("image-node"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def kube_helm(image_cluster: Any) -> Any:
    """helm and kubectl (scripts/helm.sh) pointed at that cluster."""
    from deploy_support import Helm, tool_dir

    return Helm(tool_dir(), image_cluster.kubeconfig)


@pytest.fixture
def kube_namespace(kube_helm: Any) -> Iterator[str]:
    """A fresh namespace in that cluster, deleted afterwards (with whatever is left in it)."""
    name = f"farside-{uuid.uuid4().hex[:8]}"
    kube_helm.kubectl("create", "namespace", name)
    yield name
    kube_helm.kubectl("delete", "namespace", name, "--wait=false", check=False)
