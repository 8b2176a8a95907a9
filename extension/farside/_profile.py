"""What a JupyterHub-spawned server tells the client: job defaults and fresh tokens.

``farside_hub`` starts each user's server with environment variables (its
``docs/how-to/jupyterhub.md`` lists them). This module reads them, so that the rest of the
client needs one call each:

* :func:`task_defaults`: ``FARSIDE_DEFAULT_ENV`` and ``FARSIDE_DEFAULT_GPUS``, set by the
  profile the user chose on the spawn page, as defaults for ``@farside.task``;
* :func:`fresh_token`: the user's access token, renewed through the hub when the one in
  ``FARSIDE_TOKEN`` is about to expire (the server's ``JUPYTERHUB_API_TOKEN`` may read its
  user's ``auth_state``, and the hub refreshes that before answering).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

from farside_protocol.models import TOKEN_PREFIXES

DEFAULT_ENV = "FARSIDE_DEFAULT_ENV"
DEFAULT_GPUS = "FARSIDE_DEFAULT_GPUS"
#: a token closer than this to its expiry is renewed (a job submission may take a while)
MIN_LIFETIME = 120.0


def task_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``env`` and ``gpus`` for a task that names neither, from the hub profile; empty
    outside a hub. A malformed value is ignored rather than failing every task.

    >>> task_defaults({"FARSIDE_DEFAULT_ENV": "ml", "FARSIDE_DEFAULT_GPUS": "1"})
    {'env': 'ml', 'gpus': 1}
    >>> task_defaults({"FARSIDE_DEFAULT_GPUS": "many"})
    {}
    """
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    if environ.get(DEFAULT_ENV, "").strip():
        found["env"] = environ[DEFAULT_ENV].strip()
    gpus = environ.get(DEFAULT_GPUS, "").strip()
    if gpus.isdigit() and int(gpus) > 0:
        found["gpus"] = int(gpus)
    return found


def _expiry(token: str) -> float | None:
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


#: an opaque token's expiry cannot be read: the hub is asked again after this many seconds
OPAQUE_RECHECK = 60.0
_opaque_seen: dict[str, tuple[float, str]] = {}


def fresh_token(token: str, environ: Mapping[str, str] | None = None) -> str:
    """``token``, or a renewed one from the hub when this runs in a hub-spawned server and
    ``token`` is a JWT that expires within ``MIN_LIFETIME`` seconds, or an opaque token
    (whose expiry only the issuer knows) last checked with the hub over ``OPAQUE_RECHECK``
    seconds ago. Never raises for a hub that cannot help: the old token then reaches the
    gateway, which says it expired."""
    exp = _expiry(token)
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
