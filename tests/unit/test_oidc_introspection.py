"""Introspection answers (RFC 7662) held to a JWT's rules, without a provider: the shapes a
real one sends (tests/integration/test_oidc_opaque.py has the real one)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from farside_gateway.auth.introspection import check_claims
from farside_gateway.auth.oidc import REFUSED_SECONDS, OidcValidator
from farside_gateway.auth.settings import OidcConfig
from farside_protocol import Unauthorized

ISSUER = "https://iam.example.org/"
NOW = 1_000_000.0
CONFIG = OidcConfig.model_validate(
    {
        "issuer": ISSUER,
        "audience": ["farside"],
        "leeway": 10,
        "introspection": True,
        "introspection_client_id": "gw",
        "introspection_client_secret": "s",
    }
)
ACTIVE = {
    "active": True,
    "iss": ISSUER,
    "aud": "farside",
    "exp": NOW + 60,
    "token_type": "Bearer",
    "preferred_username": "alice",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"aud": ["other", "farside"]},
        {"iss": None},
        {"token_type": None},
        {"exp": None},
        {"exp": NOW - 5},
    ],  # within the leeway
)
def test_active_access_tokens_for_this_gateway_pass(changes: dict[str, Any]) -> None:
    body = {k: v for k, v in {**ACTIVE, **changes}.items() if v is not None}
    assert check_claims(CONFIG, body, NOW) == body


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"active": False}, "not active at https://iam.example.org/"),
        ({"active": "true"}, "not active"),  # only JSON true counts
        ({"aud": None}, "audience None, not this gateway"),  # e.g. a refresh token
        ({"aud": ["other"]}, "audience ['other'], not this gateway (farside)"),
        ({"iss": "https://evil.example.org/"}, "issued by 'https://evil.example.org/'"),
        ({"token_type": "refresh_token"}, "not an access token"),
        ({"exp": NOW - 11}, "token expired; run `farside login`"),
        ({"exp": "soon"}, "'exp' is not a number"),
        ({"nbf": NOW + 60}, "not valid yet"),
    ],
)
def test_other_answers_are_refused_saying_why(changes: dict[str, Any], message: str) -> None:
    body = {k: v for k, v in {**ACTIVE, **changes}.items() if v is not None}
    with pytest.raises(Unauthorized, match=re.escape(message)):
        check_claims(CONFIG, body, NOW)


# ------------------------------------------------------------ refusals are remembered


class CountingIssuer:
    """Discovery plus an introspection endpoint that knows one active token; or is down."""

    def __init__(self) -> None:
        self.introspections = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            meta = {"issuer": ISSUER, "introspection_endpoint": ISSUER + "introspect"}
            return httpx.Response(200, json=meta)
        self.introspections += 1
        if self.down:
            return httpx.Response(503)
        token = dict(httpx.QueryParams(request.content.decode()))["token"]
        good = {**ACTIVE, "exp": time.time() + 60}
        return httpx.Response(200, json=good if token == "good" else {"active": False})


async def test_a_refused_token_is_refused_again_without_asking_the_issuer() -> None:
    issuer = CountingIssuer()
    now = [time.time()]
    validator = OidcValidator(
        CONFIG, transport=httpx.MockTransport(issuer.handler), clock=lambda: now[0]
    )
    for _ in range(5):
        with pytest.raises(Unauthorized, match="not active"):
            await validator.principal("made-up")
    assert issuer.introspections == 1
    now[0] += REFUSED_SECONDS + 1  # after a while the issuer is asked again
    with pytest.raises(Unauthorized, match="not active"):
        await validator.principal("made-up")
    assert issuer.introspections == 2
    assert (await validator.principal("good")).name == "alice"


async def test_an_issuer_that_cannot_answer_is_asked_again_next_time() -> None:
    issuer = CountingIssuer()
    issuer.down = True
    validator = OidcValidator(CONFIG, transport=httpx.MockTransport(issuer.handler))
    with pytest.raises(Unauthorized, match="cannot check the token"):
        await validator.principal("good")
    issuer.down = False  # nothing was remembered about the token itself
    assert (await validator.principal("good")).name == "alice"
    assert issuer.introspections == 2
