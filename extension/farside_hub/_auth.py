"""The hub's authenticator: GenericOAuthenticator that knows the user from the access token.

farside's gateway identifies a user by the claims of their OIDC access token (a JWT whose
audience is the gateway). The hub reads the same claims, so a user's hub name and groups are
exactly what the gateway will see, and it needs no userinfo call: some issuers (e.g.
oidc-provider with resource indicators) do not accept a resource server's token at their
userinfo endpoint. An access token that is not a JWT falls back on the userinfo endpoint.

The token is read without checking its signature: the hub got it directly from the issuer's
token endpoint, the case in which OIDC Core (3.1.3.7) lets a client skip validation, and the
gateway checks the signature on every use anyway.

A token that expires within ``token_min_lifetime`` seconds counts as expired, so that
oauthenticator's ``refresh_user`` swaps it for a fresh one with the refresh token: before a
spawn (``refresh_pre_spawn``) and at most every ``auth_refresh_age`` seconds when the user or
their server talks to the hub.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from oauthenticator.generic import GenericOAuthenticator
from tornado.httpclient import HTTPClientError
from traitlets import Integer


class FarsideOAuthenticator(GenericOAuthenticator):  # type: ignore[misc]
    """GenericOAuthenticator with the user's claims from the (JWT) access token."""

    token_min_lifetime = Integer(
        900,
        config=True,
        help="""Seconds an access token must still be valid to be handed out; one closer to
        its expiry is refreshed first. Keep it above auth_refresh_age, so that a token read
        from the hub between two refreshes is still good for a while.""",
    )

    async def token_to_user(self, token_info: dict[str, Any]) -> Any:
        access_token = str(token_info.get("access_token", ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                access_token, options={"verify_signature": False, "verify_exp": False}
            )
        except jwt.PyJWTError:
            return await super().token_to_user(token_info)  # opaque token: ask userinfo
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires - time.time() < self.token_min_lifetime:
            # what oauthenticator takes for "this access token no longer works": refresh it
            raise HTTPClientError(401, "access token expires soon")
        return claims
