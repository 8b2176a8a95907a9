"""Keeping the client's token fresh, in one place: a notebook kernel outlives its first
access token.

Two kinds of token are renewed; the rest (``client.json``'s, farside's own ``fs*_`` tokens,
a ``token=`` argument) are fixed.

* **In a JupyterHub server** (``farside_hub`` put the user's token in ``FARSIDE_TOKEN``):
  :func:`hub_renewed` asks the hub for the user's current access token when the one in
  hand is a JWT that expires within :data:`MIN_LIFETIME` seconds, or an opaque token
  (whose expiry only the issuer knows) last checked over :data:`OPAQUE_RECHECK` seconds
  ago. The server's ``JUPYTERHUB_API_TOKEN`` may read its user's ``auth_state``, and the
  hub refreshes that before answering.
* **After ``farside login``**: the token set is cached in ``oidc-token.json`` (mode 0600)::

      {"issuer": ..., "client_id": ..., "token_endpoint": ..., "gateway_url": ...,
       "access_token": ..., "refresh_token": ..., "expires_at": 1767225600.0}

  :func:`cached_token` gives the access token, first refreshed with the refresh token when
  it expires within :data:`REFRESH_MARGIN` seconds. It is used only for the gateway it was
  obtained for (``gateway_url``), or for any gateway after ``farside login --issuer``.

:func:`renewal` picks the one that applies to a resolved configuration, for the HTTP layer
to call before each request.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from farside_protocol import ConfigurationError, FarsideError, env
from farside_protocol.models import TOKEN_PREFIXES

from ._paths import token_file

if TYPE_CHECKING:
    from ._config import ClientConfig

#: refresh a cached login's access token that expires within this many seconds
REFRESH_MARGIN = 60.0
#: a hub token closer than this to its expiry is renewed (a job submission may take a while)
MIN_LIFETIME = 120.0
#: an opaque token's expiry cannot be read: the hub is asked again after this many seconds
OPAQUE_RECHECK = 60.0
#: talking to an OIDC issuer
ISSUER_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class LoginError(FarsideError):
    """The login did not succeed; the message says why and what to do."""


# ------------------------------------------------------------------ in a JupyterHub server


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without checking it (the gateway checks); None if the
    token is not a JWT or names no expiry."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def hub_access_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The user's access token as the hub has it now, refreshed first if the hub's
    ``auth_refresh_age`` has passed (``GET /users/<name>`` with the server's token, which may
    read its user's ``auth_state``); None outside a hub server or when the hub cannot say."""
    environ = os.environ if environ is None else environ
    api_url, api_token = environ.get("JUPYTERHUB_API_URL"), environ.get("JUPYTERHUB_API_TOKEN")
    user = environ.get("JUPYTERHUB_USER")
    if not api_url or not api_token or not user:
        return None
    try:
        response = httpx.get(
            f"{api_url.rstrip('/')}/users/{user}",
            headers={"Authorization": f"token {api_token}"},
            timeout=30.0,
        )
        response.raise_for_status()
        state = response.json().get("auth_state") or {}
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    token = state.get("access_token") if isinstance(state, dict) else None
    return token if isinstance(token, str) and token else None


_opaque_seen: dict[str, tuple[float, str]] = {}


def hub_renewed(token: str, environ: Mapping[str, str] | None = None) -> str:
    """``token``, or a renewed one from the hub (see the module docstring). Never raises
    for a hub that cannot help: the old token then reaches the gateway, which says it
    expired."""
    exp = jwt_expiry(token)
    if exp is not None:
        if exp - time.time() > MIN_LIFETIME:
            return token
        return hub_access_token(environ) or token
    if token.startswith(tuple(TOKEN_PREFIXES.values())):
        return token  # farside's own tokens do not expire behind the user's back
    checked = _opaque_seen.get(token)
    now = time.monotonic()
    if checked is not None and now - checked[0] < OPAQUE_RECHECK:
        return checked[1]
    current = hub_access_token(environ) or token
    _opaque_seen.clear()  # one user per server: only the newest answer matters
    _opaque_seen[token] = (now, current)
    return current


# ------------------------------------------------------------------ farside login's cache


def post_to_issuer(url: str, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A form POST to an issuer's endpoint: its status and JSON body (empty if none)."""
    try:
        response = httpx.post(url, data=data, timeout=ISSUER_TIMEOUT)
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach {url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def issuer_error(body: dict[str, Any]) -> str:
    """An OAuth error body as one line: ``error: error_description``."""
    text = str(body.get("error", "error"))
    return text + (f": {body['error_description']}" if body.get("error_description") else "")


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by its owner only, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(tmp, 0o600)  # the umask may have narrowed it, never widened: make it exact
    os.replace(tmp, path)


def token_record(tokens: dict[str, Any], base: dict[str, Any], now: float) -> dict[str, Any]:
    """The cache's record for an issuer's token response (``base``: issuer, client, ...)."""
    record = {**base, "access_token": tokens["access_token"]}
    record["refresh_token"] = tokens.get("refresh_token") or base.get("refresh_token")
    expires_in = tokens.get("expires_in")
    record["expires_at"] = now + float(expires_in) if expires_in else None
    return record


def load_tokens() -> dict[str, Any] | None:
    path = token_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path} ({exc}); run `farside login` again") from exc
    return data if isinstance(data, dict) and data.get("access_token") else None


def _refresh(record: dict[str, Any], now: float) -> dict[str, Any]:
    if not record.get("refresh_token"):
        raise ConfigurationError(
            f"your login at {record.get('issuer')} has expired; run `farside login` again"
        )
    status, body = post_to_issuer(
        str(record["token_endpoint"]),
        {
            "grant_type": "refresh_token",
            "refresh_token": str(record["refresh_token"]),
            "client_id": str(record["client_id"]),
        },
    )
    if status != 200 or "access_token" not in body:
        raise ConfigurationError(
            f"your login at {record.get('issuer')} could not be renewed ({issuer_error(body)}); "
            "run `farside login` again"
        )
    fresh = token_record(body, record, now)
    write_private(token_file(), fresh)
    return fresh


def cached_token(url: str | None) -> tuple[str, str, str | None] | None:
    """``(token, source, gateway_url)`` from ``farside login``'s cache, refreshed when near
    expiry; None without a login, or when the login was for another gateway than ``url``."""
    record = load_tokens()
    if record is None:
        return None
    gateway_url = record.get("gateway_url")
    if url and gateway_url and url.rstrip("/") != str(gateway_url).rstrip("/"):
        return None
    now = time.time()
    expires_at = record.get("expires_at")
    if expires_at is not None and float(expires_at) - now < REFRESH_MARGIN:
        record = _refresh(record, now)
    return str(record["access_token"]), str(token_file()), gateway_url


# ------------------------------------------------------------------ which applies


def from_login(config: ClientConfig) -> bool:
    """Whether the configuration's token is ``farside login``'s."""
    return config.token_source == str(token_file())


def renewal(config: ClientConfig) -> Callable[[str], str | None] | None:
    """What renews this configuration's token (called with the token in hand, before each
    request), or None for a fixed token."""
    if from_login(config):

        def from_cache(_: str) -> str | None:
            found = cached_token(config.url)
            return found[0] if found is not None else None

        return from_cache
    if config.token_source == f"${env.TOKEN}" and os.environ.get("JUPYTERHUB_API_TOKEN"):
        return hub_renewed  # a JupyterHub server: the hub renews the token
    return None
