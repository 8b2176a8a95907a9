"""``configure``: everything farside needs from a JupyterHub, set on its config object.

The contract with the user's server is a set of environment variables, like JupyterHub's own
``JUPYTERHUB_*``:

* ``FARSIDE_GATEWAY_URL``: where the gateway is;
* ``FARSIDE_TOKEN``: the user's OIDC access token at spawn time (fresh: the hub refreshes it
  before each spawn);
* ``FARSIDE_PROFILE``, ``FARSIDE_DEFAULT_ENV``, ``FARSIDE_DEFAULT_GPUS``: the chosen profile
  and the job defaults it sets (:mod:`farside_hub._profiles`).

A server that outlives its access token gets a fresh one from the hub itself:
``GET $JUPYTERHUB_API_URL/user`` with the server's ``JUPYTERHUB_API_TOKEN`` returns the
user's ``auth_state``, refreshed first when older than ``auth_refresh_age`` (the server's
role here includes ``admin:auth_state!user`` for that); ``farside._tokens.hub_renewed``
does this. The same server token is also accepted by the gateway directly (it carries
``access:services!service=farside``), so a notebook never needs to log in again while its
server runs.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from ._profiles import DEFAULT_PROFILES, Profile, options_form, options_from_form, pick

SERVICE_NAME = "farside"
DEFAULT_SCOPES = ("openid", "profile", "email", "groups", "offline_access")
SERVICE_SCOPE = f"access:services!service={SERVICE_NAME}"


def discover(issuer: str, timeout: float = 10.0) -> dict[str, Any]:
    """The issuer's discovery document; RuntimeError saying what is wrong otherwise."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            meta: dict[str, Any] = json.load(response)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the OIDC discovery document {url}: {exc}") from exc
    if meta.get("issuer") != issuer:
        raise RuntimeError(
            f"{url} names issuer {meta.get('issuer')!r}, not {issuer!r}; pass the issuer "
            "exactly as its tokens' iss claim has it"
        )
    return meta


def configure(
    c: Any,
    *,
    gateway_url: str,
    issuer: str,
    client_id: str,
    client_secret: str,
    callback_url: str | None = None,
    gateway_service_url: str | None = None,
    service_api_token: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    authorize_params: dict[str, str] | None = None,
    username_claim: str = "preferred_username",
    groups_claim: str = "groups",
    allowed_groups: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    allow_all: bool = False,
    profiles: Sequence[Profile] = DEFAULT_PROFILES,
    auth_refresh_age: int = 300,
    token_min_lifetime: int = 900,
    login_service: str = "your institute's login",
    dask_gateway_proxy: str | None = None,
) -> None:
    """Set up ``c`` (the ``jupyterhub_config.py`` config object) for farside.

    Login with :class:`FarsideOAuthenticator` at ``issuer`` (endpoints from its discovery
    document, read now) as confidential client ``client_id``; ``callback_url`` is
    ``<public hub URL>/hub/oauth_callback`` (default: oauthenticator's, from the request).
    Hub groups follow the ``groups_claim`` claim; ``allowed_groups`` may log in (or anyone,
    with ``allow_all``), ``admin_groups`` are hub admins. ``auth_state`` is kept encrypted
    with the key in ``JUPYTERHUB_CRYPT_KEY`` (``openssl rand -hex 32``), which must be set.

    The gateway is registered as the hub service ``farside`` at ``gateway_service_url``
    (default ``gateway_url``) with ``service_api_token``, and every user and server may
    access it. Servers get ``FARSIDE_GATEWAY_URL=gateway_url``, the user's token and the
    chosen profile's variables (``profiles``: the spawn page's choices, the first the
    default). With ``dask_gateway_proxy`` (the gateway's ``gateway://host:port`` for
    schedulers), servers also get the ``DASK_GATEWAY__*`` variables a dask-gateway
    deployment sets, so notebooks that call ``dask_gateway.Gateway()`` run unchanged.
    """
    if not os.environ.get("JUPYTERHUB_CRYPT_KEY"):
        raise RuntimeError(
            "farside_hub keeps users' tokens in encrypted auth_state: set JUPYTERHUB_CRYPT_KEY "
            "(e.g. export JUPYTERHUB_CRYPT_KEY=$(openssl rand -hex 32)) in the hub's environment"
        )
    allowed, admins = set(allowed_groups), set(admin_groups)
    if not allowed and not allow_all:
        raise ValueError("name allowed_groups (who may log in), or pass allow_all=True")
    if not profiles:
        raise ValueError("profiles must offer at least one profile")
    meta = discover(issuer)

    auth = c.FarsideOAuthenticator
    c.JupyterHub.authenticator_class = "farside_hub.FarsideOAuthenticator"
    auth.login_service = login_service
    auth.client_id = client_id
    auth.client_secret = client_secret
    if callback_url:
        auth.oauth_callback_url = callback_url
    auth.authorize_url = meta["authorization_endpoint"]
    auth.token_url = meta["token_endpoint"]
    if meta.get("userinfo_endpoint"):
        auth.userdata_url = meta["userinfo_endpoint"]
    auth.scope = list(scopes)
    # offline_access (a refresh token) is granted only with prompt=consent (OIDC Core 11)
    auth.extra_authorize_params = {"prompt": "consent", **(authorize_params or {})}
    auth.username_claim = username_claim
    auth.manage_groups = True
    auth.auth_state_groups_key = f"oauth_user.{groups_claim}"
    auth.allowed_groups = allowed
    auth.admin_groups = admins
    auth.allow_all = allow_all
    auth.enable_auth_state = True
    auth.refresh_pre_spawn = True
    auth.auth_refresh_age = auth_refresh_age
    auth.token_min_lifetime = token_min_lifetime

    service: dict[str, Any] = {
        "name": SERVICE_NAME,
        "url": gateway_service_url or gateway_url,
        "display": True,
        "oauth_no_confirm": True,
    }
    if service_api_token:
        service["api_token"] = service_api_token
    c.JupyterHub.services = [*_existing(c.JupyterHub, "services"), service]
    c.JupyterHub.load_roles = [*_existing(c.JupyterHub, "load_roles"), *_roles()]

    c.Spawner.options_form = options_form(profiles)
    c.Spawner.options_from_form = _options_from_form
    c.Spawner.auth_state_hook = _token_hook(gateway_url, dask_gateway_proxy)
    c.Spawner.pre_spawn_hook = _profile_hook(tuple(profiles))


def _existing(section: Any, name: str) -> list[Any]:
    # traitlets' Config makes an empty sub-config for a name never set: that is "none yet"
    value = section.get(name) if hasattr(section, "get") else None
    return list(value) if isinstance(value, list | tuple) else []


def _roles() -> list[dict[str, Any]]:
    """Every user, and every user's server, may use the gateway; a server may read its
    user's auth_state (to renew the farside token), and the user may too (a token's scopes
    never exceed its owner's)."""
    return [
        {
            "name": "user",
            "description": "Default user role, plus the farside gateway",
            "scopes": ["self", SERVICE_SCOPE, "admin:auth_state!user"],
        },
        {
            "name": "server",
            "description": "Default server role, plus the farside gateway and fresh tokens",
            "scopes": [
                "users:activity!user",
                "access:servers!server",
                SERVICE_SCOPE,
                "admin:auth_state!user",
            ],
        },
    ]


def _options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    return options_from_form(formdata)


def dask_gateway_variables(gateway_url: str, proxy: str) -> dict[str, str]:
    """What a dask-gateway deployment puts in servers' environments (as daskhub does): the
    stock client finds farside's dask-gateway API and authenticates with the server's hub
    API token, which the gateway (a hub service) accepts.

    >>> dask_gateway_variables("http://gw:8765", "gateway://gw:8766")["DASK_GATEWAY__ADDRESS"]
    'http://gw:8765/dask-gateway'
    """
    return {
        "DASK_GATEWAY__ADDRESS": f"{gateway_url.rstrip('/')}/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": proxy,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def _token_hook(gateway_url: str, dask_gateway_proxy: str | None) -> Any:
    def hook(spawner: Any, auth_state: dict[str, Any] | None) -> None:
        variables = {"FARSIDE_GATEWAY_URL": gateway_url}
        if dask_gateway_proxy:
            variables.update(dask_gateway_variables(gateway_url, dask_gateway_proxy))
        token = (auth_state or {}).get("access_token")
        if token:
            variables["FARSIDE_TOKEN"] = str(token)
        else:  # e.g. a user created by an admin who never logged in: say why in the hub log
            spawner.log.warning(
                "no access token in auth_state of %s; the server gets no FARSIDE_TOKEN",
                spawner.user.name,
            )
        spawner.environment = {**spawner.environment, **variables}

    return hook


def _profile_hook(profiles: tuple[Profile, ...]) -> Any:
    def hook(spawner: Any) -> None:
        profile = pick(profiles, spawner.user_options or {})
        spawner.log.info("%s spawns with farside profile %s", spawner.user.name, profile.slug)
        spawner.environment = {**spawner.environment, **profile.server_environment()}
        # KubeSpawner's traits; a spawner of local processes has neither
        if profile.image is not None and hasattr(spawner, "image"):
            spawner.image = profile.image
        if profile.gpus and hasattr(spawner, "extra_resource_limits"):
            spawner.extra_resource_limits = {
                **spawner.extra_resource_limits,
                "nvidia.com/gpu": str(profile.gpus),
            }

    return hook
