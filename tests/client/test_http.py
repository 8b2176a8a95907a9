"""Reaching the gateway: unreachable addresses, tokens, and error envelopes."""

from __future__ import annotations

import socket

import httpx
import pytest

import farside
from farside_protocol import ServiceUnavailable
from support.fake_gateway import FakeGateway


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mock_gateway(routes: dict[str, httpx.Response]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/whoami":
            return httpx.Response(200, json={"name": "alice", "kind": "user"})
        return routes[f"{request.method} {request.url.path}"]

    return httpx.MockTransport(handle)


def envelope(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": {"why": 1}}}


def test_closed_port_names_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(farside.GatewayUnreachable) as info:
        farside.Gateway(url, "tok")
    assert url in str(info.value)
    assert info.value.url == url


def test_bad_token_says_what_to_do(fake_gateway: FakeGateway) -> None:
    with pytest.raises(farside.Unauthorized) as info:
        farside.Gateway(fake_gateway.url, "wrong")
    message = str(info.value)
    assert fake_gateway.url in message
    assert "farside up" in message
    assert "FARSIDE_TOKEN" in message


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "not_found", farside.NotFound),
        (409, "conflict", farside.Conflict),
        (422, "invalid_request", farside.InvalidRequest),
        (403, "forbidden", farside.Forbidden),
        (413, "payload_too_large", farside.PayloadTooLarge),
    ],
)
def test_envelopes_become_exceptions(status: int, code: str, cls: type[Exception]) -> None:
    transport = mock_gateway(
        {"GET /api/v1/jobs/5": httpx.Response(status, json=envelope(code, "m"))}
    )
    gw = farside.Gateway("http://gw", "tok", transport=transport, set_as_default=False)
    with gw, pytest.raises(cls, match=r"^m$") as info:
        gw.job(5)
    assert type(info.value) is cls
    assert info.value.details == {"why": 1}  # type: ignore[attr-defined]


def test_non_envelope_error_maps_by_status() -> None:
    transport = mock_gateway({"GET /api/v1/sites": httpx.Response(503, text="upstream down")})
    gw = farside.Gateway("http://gw", "tok", transport=transport, set_as_default=False)
    with gw, pytest.raises(ServiceUnavailable, match="upstream down"):
        gw.sites()


def test_requests_carry_the_bearer_token() -> None:
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"name": "alice", "kind": "user"})

    with farside.Gateway("http://gw", "s3cret", transport=httpx.MockTransport(handle)) as gw:
        assert gw.whoami().name == "alice"
    assert seen == ["Bearer s3cret", "Bearer s3cret"]
