"""The gateway as a JupyterHub service: it accepts a hub token with the scope
``access:services!service=farside`` and refuses one without, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.hub import HubStack, hub_stack, hub_user_token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStack]:
    yield from hub_stack(tmp_path_factory.mktemp("hub"))


def _token(stack: HubStack, user: str, scopes: list[str]) -> str:
    with stack.hub_api() as api:
        return hub_user_token(api, user, scopes)


def test_hub_token_with_the_service_scope_is_accepted(hub: HubStack) -> None:
    token = _token(hub, "alice", ["access:services!service=farside"])
    with hub.gateway.http(token) as gw:
        response = gw.get("/whoami")
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "alice"


def test_hub_token_without_the_scope_is_refused(hub: HubStack) -> None:
    token = _token(hub, "alice", ["read:users:name!user"])
    with hub.gateway.http(token) as gw:
        response = gw.get("/whoami")
    assert response.status_code == 403, response.text
    assert "access:services!service=farside" in response.text


def test_unknown_hub_token_is_refused(hub: HubStack) -> None:
    with hub.gateway.http("0123456789abcdef0123456789abcdef") as gw:
        response = gw.get("/whoami")
    assert response.status_code == 401, response.text
    assert "JupyterHub does not know this token" in response.text
