from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import farside
from farside import _gateway
from support.fake_gateway import USER_TOKEN, FakeGateway


@pytest.fixture(autouse=True)
def isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No test sees the developer's own gateway configuration or leaves a default behind."""
    monkeypatch.delenv("FARSIDE_GATEWAY_URL", raising=False)
    monkeypatch.delenv("FARSIDE_TOKEN", raising=False)
    config = tmp_path / "farside-config"
    monkeypatch.setenv("FARSIDE_CONFIG_DIR", str(config))
    yield config
    if _gateway._default is not None:
        _gateway._default.close()


@pytest.fixture
def gw(fake_gateway: FakeGateway) -> Iterator[farside.Gateway]:
    with farside.Gateway(fake_gateway.url, USER_TOKEN) as gateway:
        yield gateway
