"""OIDC without a provider: configuration, claim mapping, and the validator's key handling
against an issuer played by ``httpx.MockTransport``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from farside_gateway.auth.oidc import OidcValidator, groups_from_claim, principal_from_claims
from farside_gateway.auth.settings import OidcConfig
from farside_gateway.config import load_config
from farside_protocol import ConfigurationError, Forbidden, Unauthorized

ISSUER = "https://iam.example.org/"


def _config(**fields: Any) -> OidcConfig:
    return OidcConfig.model_validate({"issuer": ISSUER, "audience": "farside", **fields})


# ---------------------------------------------------------------- configuration


def test_oidc_is_off_by_default_and_single_values_become_lists() -> None:
    assert not load_config(None).oidc.enabled
    config = _config(admin_groups="ops", username_claim="email")
    assert config.audience == ["farside"]
    assert config.admin_groups == ["ops"]
    assert config.username_claim == ["email"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"issuer": ISSUER}, "oidc.audience is required"),
        ({"issuer": "http://iam.example.org", "audience": "x"}, "must use https"),
        ({"issuer": "iam.example.org", "audience": "x"}, r"not an http\(s\) URL"),
        ({"algorithms": ["HS256"]}, "HS256 not allowed"),
        ({"username_claim": []}, "at least one claim"),
        ({"issuer": ISSUER, "audience": "x", "jwks_url": "x"}, "Extra inputs"),
        (
            {
                "issuer": ISSUER,
                "audience": "x",
                "introspection": True,
                "introspection_client_id": "gw",
            },
            "set oidc.introspection_client_id and oidc.introspection_client_secret",
        ),
    ],
)
def test_bad_oidc_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(None, oidc=fields)


def test_plain_http_is_allowed_on_loopback() -> None:
    assert _config(issuer="http://127.0.0.1:9090").enabled


# ---------------------------------------------------------------- claims


def test_groups_claims_in_their_usual_shapes() -> None:
    assert groups_from_claim(["/cms", "/cms/higgs", "atlas"]) == ["cms", "cms/higgs", "atlas"]
    assert groups_from_claim("a b a") == ["a", "b"]
    assert groups_from_claim(None) == []
    assert groups_from_claim({"a": 1}) == []


def test_claims_map_to_a_user() -> None:
    config = _config(admin_groups=["ops"], groups_claim="wlcg.groups")
    claims = {"sub": "1234", "preferred_username": "alice", "wlcg.groups": ["/atlas", "/ops"]}
    who = principal_from_claims(config, claims, share_groups={"ops"})
    assert (who.kind, who.name, who.admin) == ("user", "alice", True)
    assert who.groups == ("ops", "atlas")  # fair share's group first
    assert who.share_group == "ops"
    assert principal_from_claims(config, {"sub": "1234"}).name == "1234"
    assert principal_from_claims(config, {"sub": "x", "preferred_username": " "}).name == "x"
    with pytest.raises(Unauthorized, match="names no user"):
        principal_from_claims(config, {"email": "a@b"})


def test_allowed_groups_keep_others_out() -> None:
    config = _config(allowed_groups=["atlas"])
    assert principal_from_claims(config, {"sub": "a", "groups": ["atlas"]}).name == "a"
    with pytest.raises(Forbidden, match="none of the groups allowed"):
        principal_from_claims(config, {"sub": "b", "groups": ["cms"]})


# ---------------------------------------------------------------- validator


class FakeIssuer:
    """Discovery and JWKS over a mock transport; keys can be rotated."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.jwks_fetches = 0
        self.rotate()

    def rotate(self) -> str:
        kid = f"k{len(self.keys)}"
        self.keys.insert(0, (kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        return kid

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": ISSUER + "jwks"})
        self.jwks_fetches += 1
        keys = []
        for kid, key in self.keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return httpx.Response(200, json={"keys": keys})

    def token(self, now: float, **claims: Any) -> str:
        kid, key = self.keys[0]
        body = {"iss": ISSUER, "aud": "farside", "sub": "alice", "exp": now + 60, **claims}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


def _validator(issuer: FakeIssuer, clock: Clock, **fields: Any) -> OidcValidator:
    config = _config(leeway=0, jwks_min_refresh=10, **fields)
    return OidcValidator(config, transport=httpx.MockTransport(issuer.handler), clock=clock)


async def test_keys_are_cached_and_fetched_again_for_a_new_key(issuer: FakeIssuer) -> None:
    clock = Clock(time.time())
    validator = _validator(issuer, clock)
    assert (await validator.principal(issuer.token(clock.now))).name == "alice"
    assert (await validator.principal(issuer.token(clock.now, sub="bob"))).name == "bob"
    assert issuer.jwks_fetches == 1
    issuer.rotate()  # tokens now name a key the validator has not seen
    clock.now += 11
    assert (await validator.principal(issuer.token(clock.now, sub="carol"))).name == "carol"
    assert issuer.jwks_fetches == 2


async def test_unknown_keys_refetch_at_most_every_min_refresh(issuer: FakeIssuer) -> None:
    clock = Clock(time.time())
    validator = _validator(issuer, clock)
    await validator.principal(issuer.token(clock.now))
    stranger = FakeIssuer()
    stranger.keys[0] = ("unknown", stranger.keys[0][1])
    for _ in range(3):
        with pytest.raises(Unauthorized, match="does not publish"):
            await validator.principal(stranger.token(clock.now))
    assert issuer.jwks_fetches == 1  # made-up key ids do not hammer the issuer
    clock.now += 10
    with pytest.raises(Unauthorized, match="does not publish"):
        await validator.principal(stranger.token(clock.now))
    assert issuer.jwks_fetches == 2


async def test_a_cached_validation_ends_with_the_token(issuer: FakeIssuer) -> None:
    clock = Clock(time.time())
    validator = _validator(issuer, clock)
    token = issuer.token(clock.now, exp=clock.now + 5)
    await validator.principal(token)
    clock.now += 6
    with pytest.raises(Unauthorized, match="token expired; run `farside login`"):
        await validator.principal(token)


async def test_claims_are_checked(issuer: FakeIssuer) -> None:
    clock = Clock(time.time())
    validator = _validator(issuer, clock)
    cases = [
        ({"aud": "other"}, "audience 'other'"),
        ({"nbf": clock.now + 100}, "not valid yet"),
        ({"iss": "https://evil.example.org/"}, "issued by 'https://evil.example.org/'"),
    ]
    for claims, message in cases:
        with pytest.raises(Unauthorized, match=message):
            await validator.principal(issuer.token(clock.now, **claims))
    unsigned = jwt.encode({"iss": ISSUER, "aud": "farside", "sub": "x"}, None, algorithm="none")
    with pytest.raises(Unauthorized, match="signed with 'none'"):
        await validator.principal(unsigned)


async def test_an_unreachable_issuer_is_reported(issuer: FakeIssuer) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    validator = OidcValidator(_config(), transport=httpx.MockTransport(down))
    with pytest.raises(Unauthorized, match="cannot reach its OIDC issuer"):
        await validator.principal(issuer.token(time.time()))
