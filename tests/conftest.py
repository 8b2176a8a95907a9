"""Shared fixtures: real gateways on SQLite, and on PostgreSQL when the marker is selected.

The PostgreSQL variant needs the server that ``scripts/postgres.sh`` starts; its DSN comes
from ``FARSIDE_TEST_POSTGRES`` (``scripts/test.sh`` sets it). Each test gets a database of
its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# the support package's asserts explain themselves as the tests' do
pytest.register_assert_rewrite("support")

from support.harness import GatewayProcess, postgres_database  # noqa: E402

#: fixtures of the support modules, for every test that names them
pytest_plugins = [
    "support.authz_world",
    "support.browser",
    "support.deploy",
    "support.fake_gateway",
    "support.kubernetes",
    "support.oidc",
    "support.slurm",
]


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the state dir) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        yield from postgres_database()


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
