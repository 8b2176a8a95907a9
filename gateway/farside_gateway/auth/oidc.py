"""OIDC access tokens: JWTs from a trusted issuer (e.g. INDIGO IAM), checked locally.

A token is accepted when it is signed by one of the issuer's published keys (its JWKS,
found through ``<issuer>/.well-known/openid-configuration``) with an allowed algorithm, and
its ``iss``, ``aud``, ``exp`` and ``nbf`` are right. The keys are cached and fetched again
when a token names a key not among them (the issuer rotated its keys), at most every
``jwks_min_refresh`` seconds, so that made-up key ids cannot make the gateway hammer the
issuer. Fetches use httpx's async client and never block the event loop.

The user's name is the first present of ``username_claim``; their groups come from
``groups_claim`` and decide fair share and admin rights (``admin_groups``).

With ``introspection`` on, a bearer token that is not a JWT is an opaque access token: the
issuer is asked about it (RFC 7662, :mod:`farside_gateway.auth.introspection`), and its
answer is mapped to a user the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

import httpx
import jwt

from farside_protocol import Forbidden, Unauthorized
from farside_protocol.models import TOKEN_PREFIXES

from .introspection import IssuerUnreachable, introspect
from .settings import OidcConfig
from .tokens import ExpiringEntries, Principal, TokenCache

log = logging.getLogger(__name__)

FARSIDE_PREFIXES = tuple(TOKEN_PREFIXES.values())
#: validations are remembered at most this long, and never past the token's expiry
CACHE_SECONDS = 300.0
#: seconds an opaque token the issuer refused is refused without asking again, and how
#: many such tokens are kept (beyond that the list starts afresh)
REFUSED_SECONDS = 30.0
REFUSED_KEPT = 10_000
_LOGIN = "run `farside login` to get a new one"


def is_farside_token(token: str) -> bool:
    return token.startswith(FARSIDE_PREFIXES)


def is_jwt(token: str) -> bool:
    """Whether the token parses as a JWT (header and claims; the signature is not checked)."""
    try:
        jwt.get_unverified_header(token)
        jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return True


def _first_string(claims: dict[str, Any], names: list[str]) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def groups_from_claim(value: object) -> list[str]:
    """A groups claim as a list: a JSON list or a space-separated string; IAM's
    ``wlcg.groups`` style (``/cms/higgs``) loses its leading slash.

    >>> groups_from_claim(["/cms", "atlas", "", 3])
    ['cms', 'atlas']
    >>> groups_from_claim("a b")
    ['a', 'b']
    """
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        return []
    found = [item.strip().lstrip("/") for item in items if isinstance(item, str)]
    return list(dict.fromkeys(g for g in found if g))


def principal_from_claims(
    config: OidcConfig, claims: dict[str, Any], share_groups: Collection[str] = ()
) -> Principal:
    """Map a verified token's claims to a user. Groups that fair share lists come first, so
    that the one counting for fair share is a configured one, whatever the issuer's order.
    """
    name = _first_string(claims, config.username_claim)
    if name is None:
        raise Unauthorized(
            f"the token names no user (none of the claims {', '.join(config.username_claim)}); "
            "ask the gateway's operator to set oidc.username_claim"
        )
    groups = groups_from_claim(claims.get(config.groups_claim))
    if config.allowed_groups and not set(groups) & set(config.allowed_groups):
        raise Forbidden(
            f"user {name} is in none of the groups allowed on this gateway "
            f"({', '.join(config.allowed_groups)}); ask your VO or IAM admin to add you"
        )
    groups.sort(key=lambda g: g not in share_groups)  # stable: the issuer's order otherwise
    admin = bool(set(groups) & set(config.admin_groups))
    return Principal(kind="user", name=name, admin=admin, groups=tuple(groups))


class OidcValidator:
    """Checks OIDC access tokens for one issuer; one per gateway process.

    ``transport`` is the test seam (``httpx.MockTransport``); ``clock`` gives the time.
    """

    def __init__(
        self,
        config: OidcConfig,
        share_groups: Collection[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.issuer is None:
            raise ValueError("OidcValidator needs oidc.issuer")
        self.config = config
        self.issuer: str = config.issuer
        self.share_groups = frozenset(share_groups)
        self._transport = transport
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = float("-inf")  # when the keys were last fetched
        self._introspection_endpoint: str | None = None
        self._client_auth: tuple[str, str] | None = None
        if config.introspection:
            client_id, secret = config.introspection_client_id, config.introspection_client_secret
            if not client_id or secret is None:
                raise ValueError("oidc.introspection needs oidc.introspection_client_id/_secret")
            self._client_auth = (client_id, secret.get_secret_value())
        self._lock = asyncio.Lock()
        # never past a token's exp (TokenCache caps entries at Principal.expires_at)
        self._cache = TokenCache(ttl=CACHE_SECONDS)
        # opaque tokens the issuer refused, with why
        self._refused: ExpiringEntries[str] = ExpiringEntries(REFUSED_KEPT)
        #: how many times the keys were fetched (for tests and metrics)
        self.fetches = 0

    # ------------------------------------------------------------------ keys

    async def _get_json(self, client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
        try:
            response = await client.get(url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch %s of issuer %s from %s: %s", what, self.issuer, url, exc)
            raise Unauthorized(
                f"the gateway cannot reach its OIDC issuer {self.issuer} to check the token "
                "now; try again shortly (the operator finds details in the gateway log)"
            ) from None
        if not isinstance(data, dict):
            raise Unauthorized(f"the OIDC issuer {self.issuer} sent a malformed {what}")
        return data

    async def _discovery(self, client: httpx.AsyncClient) -> dict[str, Any]:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        meta = await self._get_json(client, url, "discovery document")
        if meta.get("issuer") != self.issuer:
            log.warning("issuer %s publishes issuer %r", self.issuer, meta.get("issuer"))
            raise Unauthorized(
                f"the OIDC issuer's discovery document names issuer {meta.get('issuer')!r}, "
                f"not {self.issuer!r}; the gateway's oidc.issuer must match it exactly"
            )
        endpoint = meta.get("introspection_endpoint")
        self._introspection_endpoint = endpoint if isinstance(endpoint, str) else None
        return meta

    async def endpoints(self) -> dict[str, str]:
        """The issuer's authorization and token endpoints, from its checked discovery
        document (the web monitor's browser login)."""
        async with httpx.AsyncClient(timeout=10.0, transport=self._transport) as client:
            meta = await self._discovery(client)
        try:
            return {k: str(meta[k]) for k in ("authorization_endpoint", "token_endpoint")}
        except KeyError as exc:
            raise Unauthorized(f"the OIDC issuer {self.issuer} publishes no {exc}") from None

    async def _fetch_keys(self) -> None:
        async with httpx.AsyncClient(timeout=10.0, transport=self._transport) as client:
            meta = await self._discovery(client)
            jwks = await self._get_json(client, str(meta.get("jwks_uri")), "keys (JWKS)")
        keys: dict[str, jwt.PyJWK] = {}
        for data in jwks.get("keys", []):
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(data)
            except jwt.PyJWTError as exc:  # a key type this gateway cannot use: skip it
                log.info("issuer %s: skipping key %s: %s", self.issuer, data.get("kid"), exc)
                continue
            keys[str(data.get("kid", ""))] = key
        self._keys, self._keys_at = keys, self._clock()
        self.fetches += 1
        log.info("fetched %d signing keys of issuer %s", len(keys), self.issuer)

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        async with self._lock:  # one fetch at a time; waiters then see its result
            now = self._clock()
            stale = now - self._keys_at > self.config.jwks_cache_ttl
            unknown = kid is not None and kid not in self._keys
            if stale or (unknown and now - self._keys_at >= self.config.jwks_min_refresh):
                await self._fetch_keys()
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise Unauthorized("the token names no signing key (kid); " + _LOGIN)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized(
                f"the token is signed with key {kid!r}, which the issuer {self.issuer} does "
                f"not publish; it is forged or from an old key. {_LOGIN[0].upper()}{_LOGIN[1:]}"
            )
        return key

    # ------------------------------------------------------------------ tokens

    async def principal(self, token: str) -> Principal:
        """The user a valid token belongs to; Unauthorized saying what is wrong otherwise."""
        now = self._clock()
        found, cached = self._cache.get(token, now)
        if found and cached is not None:
            return cached
        if self._client_auth is not None and not is_jwt(token):
            claims = await self._introspect_remembering_refusals(token, now)
        else:
            claims = await self._verify(token)
        who = principal_from_claims(self.config, claims, self.share_groups)
        if isinstance(claims.get("exp"), int | float):
            who = replace(who, expires_at=float(claims["exp"]))
        self._cache.put(token, who, now)
        return who

    async def _introspect_remembering_refusals(self, token: str, now: float) -> dict[str, Any]:
        found, why = self._refused.get(token, now)
        if found and why is not None:
            raise Unauthorized(why)
        try:
            return await self._introspect(token)
        except IssuerUnreachable:
            raise  # nothing learnt about the token: ask again next time
        except Unauthorized as exc:
            self._refused.put(token, exc.message, now + REFUSED_SECONDS)
            raise

    async def _introspect(self, token: str) -> dict[str, Any]:
        assert self._client_auth is not None
        async with httpx.AsyncClient(timeout=10.0, transport=self._transport) as client:
            if self._introspection_endpoint is None:  # read once: issuers rarely move it
                await self._discovery(client)
            endpoint = self._introspection_endpoint
            if endpoint is None:
                log.error("issuer %s publishes no introspection_endpoint", self.issuer)
                raise Unauthorized(
                    f"the token is not a JWT, and the OIDC issuer {self.issuer} offers no token "
                    "introspection to check it; use a JWT access token, or ask the gateway's "
                    "operator to turn off oidc.introspection"
                )
            now = self._clock()
            return await introspect(client, endpoint, self.config, self._client_auth, token, now)

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized(
                "the bearer token is neither a farside token nor a JWT access token from "
                f"{self.issuer}; {_LOGIN}"
            ) from None
        issuer = unverified.get("iss")
        if issuer != self.issuer:  # before any key fetch: foreign tokens cost nothing
            raise Unauthorized(
                f"the token was issued by {issuer!r}; this gateway accepts tokens from "
                f"{self.issuer} only: {_LOGIN}"
            )
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise Unauthorized(
                f"the token is signed with {alg!r}; this gateway accepts "
                f"{', '.join(self.config.algorithms)}"
            )
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.config.algorithms,
                audience=self.config.audience,
                issuer=self.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(f"token expired; {_LOGIN}") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized(
                "the token is not valid yet (nbf/iat in the future); check the "
                "clock of the machine that got it"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(
                f"the token is for audience {unverified.get('aud')!r}, not this gateway "
                f"({', '.join(self.config.audience)}); {_LOGIN}"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthorized(
                f"the token's signature does not verify against the keys of {self.issuer}; "
                f"it was altered or forged. {_LOGIN[0].upper()}{_LOGIN[1:]}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token has no {exc.claim!r} claim; {_LOGIN}") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid ({exc}); {_LOGIN}") from None
        # pyjwt reads the system clock; this one is the validator's (the same in production)
        if not isinstance(claims["exp"], int | float):
            raise Unauthorized(f"the token's 'exp' is not a number; {_LOGIN}")
        if claims["exp"] + self.config.leeway <= self._clock():
            raise Unauthorized(f"token expired; {_LOGIN}")
        return claims
