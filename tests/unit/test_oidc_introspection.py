"""Introspection answers (RFC 7662) held to a JWT's rules, without a provider: the shapes a
real one sends (tests/integration/test_oidc_opaque.py has the real one)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from farside_gateway.auth.introspection import check_claims
from farside_gateway.config import OidcConfig
from farside_pilot.protocol import Unauthorized

ISSUER = "https://iam.example.org/"
NOW = 1_000_000.0
CONFIG = OidcConfig.model_validate(
    {"issuer": ISSUER, "audience": ["farside"], "leeway": 10, "introspection": True,
     "introspection_client_id": "gw", "introspection_client_secret": "s"}
)  # fmt: skip
ACTIVE = {"active": True, "iss": ISSUER, "aud": "farside", "exp": NOW + 60,
          "token_type": "Bearer", "preferred_username": "alice"}  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [{}, {"aud": ["other", "farside"]}, {"iss": None}, {"token_type": None}, {"exp": None},
     {"exp": NOW - 5}],  # within the leeway
)  # fmt: skip
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
