"""JupyterHub API tokens: the gateway as a JupyterHub service.

A single-user server (or a user with a token from the hub's token page) may call the gateway
with a JupyterHub API token. The gateway asks the hub who owns it (``GET <hub>/hub/api/user``
with the token itself, the hub's "identify" call, which any token may make) and accepts it
when the token carries the scope to access this service, ``access:services!service=<name>``
(or unfiltered ``access:services``). The hub user's name is the farside user's name, so a
user has the same jobs whether they come with an OIDC token or a hub token; the hub groups
are the fair-share groups, and members of ``admin_groups`` (or hub admins, if
``hub_admins_are_admins``) are farside admins.

Hub tokens are opaque and can be revoked at the hub at any time, so answers are cached
briefly (``cache_seconds``), not until some expiry. Tokens never appear in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx

from farside_protocol import Forbidden, Unauthorized

from .settings import HubConfig
from .tokens import Principal, TokenCache

log = logging.getLogger(__name__)


class UnknownHubToken(Unauthorized):
    """The hub does not know the token: it may still be an opaque OIDC access token."""


def looks_like_jwt(token: str) -> bool:
    """JWTs are three base64url parts; JupyterHub tokens are one opaque string."""
    return token.count(".") == 2


class HubValidator:
    """Checks JupyterHub API tokens against one hub; one per gateway process.

    ``transport`` is the test seam (``httpx.MockTransport``); ``clock`` gives the time.
    """

    def __init__(
        self,
        config: HubConfig,
        share_groups: Collection[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.api_url is None:
            raise ValueError("HubValidator needs hub.api_url")
        self.config = config
        self.api_url = config.api_url.rstrip("/")
        self.scope = f"access:services!service={config.service_name}"
        self.share_groups = frozenset(share_groups)
        self._transport = transport
        self._clock = clock
        self._cache = TokenCache(ttl=config.cache_seconds)
        #: how many times the hub was asked (for tests and metrics)
        self.lookups = 0

    async def principal(self, token: str) -> Principal:
        """The hub user a token belongs to; Unauthorized or Forbidden saying why not."""
        now = self._clock()
        found, cached = self._cache.get(token, now)
        if found and cached is not None:
            return cached
        who = self._principal(await self._identify(token))
        self._cache.put(token, who, now)
        return who

    async def _identify(self, token: str) -> dict[str, Any]:
        url = f"{self.api_url}/user"
        try:
            async with httpx.AsyncClient(timeout=10.0, transport=self._transport) as client:
                response = await client.get(url, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            log.warning("cannot reach JupyterHub at %s: %s", url, exc)
            raise Unauthorized(
                "the gateway cannot reach JupyterHub to check the token now; try again shortly "
                "(the operator finds details in the gateway log)"
            ) from None
        self.lookups += 1
        if response.status_code in (401, 403):
            raise UnknownHubToken(
                "JupyterHub does not know this token (expired, revoked or mistyped); in "
                "JupyterLab restart your server, or make a new token on the hub's token page"
            )
        try:
            response.raise_for_status()
            model = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JupyterHub at %s answered %s: %s", url, response.status_code, exc)
            raise Unauthorized(
                "JupyterHub could not check the token now; try again shortly"
            ) from None
        if not isinstance(model, dict):
            raise Unauthorized("JupyterHub sent a malformed answer about the token")
        return model

    def _principal(self, model: dict[str, Any]) -> Principal:
        name = model.get("name")
        if model.get("kind", "user") != "user" or not isinstance(name, str) or not name:
            raise Forbidden(
                "this is a JupyterHub service token; the gateway accepts tokens of hub users"
            )
        scopes = model.get("scopes") or []
        if self.scope not in scopes and "access:services" not in scopes:
            raise Forbidden(
                f"the JupyterHub token of {name} lacks the scope {self.scope}; ask the hub's "
                "operator to grant it to users (farside_hub.configure does), or make a token "
                "with that scope on the hub's token page"
            )
        groups = [g for g in model.get("groups") or [] if isinstance(g, str) and g]
        if self.config.allowed_groups and not set(groups) & set(self.config.allowed_groups):
            raise Forbidden(
                f"user {name} is in none of the hub groups allowed on this gateway "
                f"({', '.join(self.config.allowed_groups)}); ask the hub's operator"
            )
        groups.sort(key=lambda g: g not in self.share_groups)  # stable otherwise
        admin = bool(set(groups) & set(self.config.admin_groups)) or (
            self.config.hub_admins_are_admins and model.get("admin") is True
        )
        return Principal(kind="user", name=name, admin=admin, groups=tuple(groups))
