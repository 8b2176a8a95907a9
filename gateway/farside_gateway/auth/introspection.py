"""Opaque OIDC access tokens: token introspection (RFC 7662) at the issuer.

An issuer such as INDIGO IAM may hand out opaque access tokens: random strings that only the
issuer can read. The gateway posts such a token to the issuer's ``introspection_endpoint``
(from its discovery document), authenticated as its own confidential client
(``oidc.introspection_client_id`` / ``oidc.introspection_client_secret``, HTTP basic), and
gets the token's claims back. An active token is then held to the rules a JWT is held to:
``iss`` (when the answer names one), ``aud``, ``exp`` and ``nbf``; the user's name and groups
come from the same claims (:func:`farside_gateway.auth.oidc.principal_from_claims`).

:class:`~farside_gateway.auth.oidc.OidcValidator` calls :func:`introspect` for bearer tokens
that are not JWTs when ``oidc.introspection`` is on, and remembers the answer like a JWT's:
five minutes at most, never past the token's ``exp``. A token the issuer refused is
remembered too, for ``REFUSED_SECONDS``: a client retrying with a dead token (or anyone
sending made-up ones) costs the issuer one call, not one per request. Tokens and the client
secret never reach the log.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from farside_protocol import Unauthorized

from .settings import OidcConfig

log = logging.getLogger(__name__)

_LOGIN = "run `farside login` to get a new one"
_ACCESS_TOKEN_TYPES = ("bearer", "access_token", "dpop")


class IssuerUnreachable(Unauthorized):
    """The issuer could not answer about a token: says nothing of the token itself."""


def _unreachable(issuer: str) -> Unauthorized:
    return IssuerUnreachable(
        f"the gateway cannot check the token at its OIDC issuer {issuer} now; try again "
        "shortly (the operator finds details in the gateway log)"
    )


async def introspect(
    client: httpx.AsyncClient,
    endpoint: str,
    config: OidcConfig,
    auth: tuple[str, str],
    token: str,
    now: float,
) -> dict[str, Any]:
    """The claims of ``token`` if the issuer says it is an active access token for this
    gateway; Unauthorized saying what is wrong otherwise. ``auth``: the gateway's client id
    and secret."""
    issuer = str(config.issuer)
    data = {"token": token, "token_type_hint": "access_token"}
    try:
        response = await client.post(
            endpoint, data=data, auth=auth, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError as exc:
        log.warning("cannot reach the introspection endpoint %s: %s", endpoint, exc)
        raise _unreachable(issuer) from None
    if response.status_code in (401, 403):
        log.error(
            "the issuer's introspection endpoint %s refused the gateway's client %r (HTTP %d); "
            "check oidc.introspection_client_id and oidc.introspection_client_secret",
            endpoint,
            auth[0],
            response.status_code,
        )
        raise _unreachable(issuer)
    try:
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("introspection at %s answered %s: %s", endpoint, response.status_code, exc)
        raise _unreachable(issuer) from None
    if not isinstance(body, dict):
        raise Unauthorized(f"the OIDC issuer {issuer} sent a malformed introspection answer")
    return check_claims(config, body, now)


def check_claims(config: OidcConfig, body: dict[str, Any], now: float) -> dict[str, Any]:
    """An introspection answer held to a JWT's rules (RFC 7662 §2.2 makes all but
    ``active`` optional; ``aud`` is required here, as for a JWT)."""
    issuer = config.issuer
    if body.get("active") is not True:
        raise Unauthorized(
            f"the access token is not active at {issuer}: it expired, was revoked, or was "
            f"never issued there; {_LOGIN}"
        )
    token_type = body.get("token_type")
    if isinstance(token_type, str) and token_type.lower() not in _ACCESS_TOKEN_TYPES:
        raise Unauthorized(f"the token is a {token_type}, not an access token; {_LOGIN}")
    if "iss" in body and body["iss"] != issuer:
        raise Unauthorized(
            f"the token was issued by {body['iss']!r}; this gateway accepts tokens from "
            f"{issuer} only: {_LOGIN}"
        )
    audience = body.get("aud")
    named = [audience] if isinstance(audience, str) else audience
    if not isinstance(named, list) or not set(named) & set(config.audience):
        raise Unauthorized(
            f"the token is for audience {audience!r}, not this gateway "
            f"({', '.join(config.audience)}); {_LOGIN}"
        )
    for claim in ("exp", "nbf"):
        if claim in body and not isinstance(body[claim], int | float):
            raise Unauthorized(f"the token's {claim!r} is not a number; {_LOGIN}")
    if "exp" in body and body["exp"] + config.leeway <= now:
        raise Unauthorized(f"token expired; {_LOGIN}")
    if "nbf" in body and body["nbf"] - config.leeway > now:
        raise Unauthorized(
            "the token is not valid yet (nbf in the future); check the clock of the machine "
            "that got it"
        )
    return body
