"""A real JupyterHub for tests: OIDC provider (with a hub client), gateway, hub and proxy.

``scripts/oidc.sh`` installs panva's oidc-provider; the hub needs a confidential client
whose redirect URI names the hub's port, so :func:`start_hub_provider` runs a second
instance of the same provider with the same users and one extra client, ``farside-hub``,
on a free port. ``scripts/hub.sh`` installs the proxy. The hub is the one ``farside up
--hub`` runs (:mod:`farside_platform.hub`), so the tests try the shipped config.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from farside_platform.hub import HubProcess, HubSettings
from support.harness import GatewayProcess, free_port, run_script
from support.oidc import REPO, start_provider

HUB_CLIENT = "farside-hub"
OIDC_APP = Path(os.environ.get("FARSIDE_OIDC_DIR", "/tmp/farside-oidc")) / "app"


def proxy_path() -> str:
    return run_script(
        "hub.sh", timeout=300, fails="could not install the proxy (it needs npm and the registry)"
    )


def artifacts_dir() -> Path:
    path = Path(os.environ.get("FARSIDE_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class HubStack:
    issuer: str
    gateway: GatewayProcess
    hub: HubProcess
    admin_token: str  # a hub service token with admin scopes, for REST calls in tests

    @property
    def url(self) -> str:
        return self.hub.settings.url

    def hub_api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.hub.settings.api_url,
            timeout=60,
            headers={"Authorization": f"token {self.admin_token}"},
        )


def start_hub_provider(
    state: Path, callback: str, secret: str, token_ttl: int | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    start_provider()  # installs the provider's node_modules (and runs the shared instance)
    config = state / "oidc"
    config.mkdir(parents=True, exist_ok=True)
    src = REPO / "scripts" / "oidc"
    clients: list[dict[str, Any]] = json.loads((src / "clients.json").read_text())
    # the shared provider's own farside-hub client is for `farside up --hub` on port 8000
    clients = [c for c in clients if c["client_id"] != HUB_CLIENT]
    clients.append(
        {
            "client_id": HUB_CLIENT,
            "client_secret": secret,
            "client_name": "farside's JupyterHub",
            "redirect_uris": [callback],
            "response_types": ["code"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
    )
    if token_ttl is not None:  # seconds the gateway-audience access tokens live
        clients[-1]["farside_access_token_ttl"] = token_ttl
    (config / "clients.json").write_text(json.dumps(clients))
    (config / "users.json").write_text((src / "users.json").read_text())
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_ISSUER": issuer,
        "OIDC_CONFIG": str(config),
        "OIDC_STATE": str(config),
    }
    with (state / "oidc.log").open("ab") as log:
        proc = subprocess.Popen(
            ["node", str(OIDC_APP / "provider.mjs")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    for _ in range(200):
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                return issuer, proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the hub's OIDC provider did not start:\n{(state / 'oidc.log').read_text()}")


def hub_settings(state: Path, issuer: str = "") -> HubSettings:
    """A hub on free ports, state in ``state/hub``; the gateway's URL is set once it runs."""
    return HubSettings(
        state_dir=state / "hub",
        gateway_url="",
        issuer=issuer,
        client_id=HUB_CLIENT,
        hub_port=free_port(),
        api_port=free_port(),
        proxy_api_port=free_port(),
        proxy=proxy_path(),
        allowed_groups=["analysts", "cms", "farside-admins"],
        admin_groups=["farside-admins"],
        service_token=secrets.token_hex(16),
    )


def hub_tester_config(admin_token: str) -> str:
    """Config lines adding a service with admin scopes, to make users and tokens in tests;
    appended after farside_hub's part of the config."""
    return f"""
c.JupyterHub.services.append({{"name": "tester", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append({{"name": "tester", "services": ["tester"],
    "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"]}})
"""


def hub_user_token(api: httpx.Client, user: str, scopes: list[str]) -> str:
    """A hub API token of ``user`` (made first if new) with ``scopes``, through the REST API
    with the tester service's token (``api``: :meth:`HubStack.hub_api`)."""
    api.post(f"/users/{user}")  # 409 when the user exists: fine
    response = api.post(f"/users/{user}/tokens", json={"scopes": scopes, "expires_in": 600})
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def hub_stack(
    state: Path, token_ttl: int | None = None, extra_config: str = ""
) -> Iterator[HubStack]:
    """OIDC provider, gateway ([oidc] + [hub]) and hub; torn down in reverse order.
    ``token_ttl``: the users' access tokens live this many seconds (the provider's default
    is an hour); ``extra_config``: more lines for jupyterhub_config.py."""
    secret, admin_token = secrets.token_hex(16), secrets.token_hex(16)
    settings = hub_settings(state)
    callback = settings.url + "/hub/oauth_callback"
    issuer, provider = start_hub_provider(state, callback, secret, token_ttl)
    settings.issuer = issuer
    gateway = GatewayProcess(
        state / "gateway",
        oidc={"issuer": issuer, "audience": ["farside"], "admin_groups": ["farside-admins"]},
        hub={"api_url": settings.api_url, "admin_groups": ["farside-admins"]},
    )
    hub: HubProcess | None = None
    try:
        gateway.start()
        settings.gateway_url = gateway.url
        settings.extra_config = hub_tester_config(admin_token) + extra_config
        hub = HubProcess(settings, secret).start()
        yield HubStack(issuer, gateway, hub, admin_token)
    finally:
        if hub is not None:
            hub.stop()
        gateway.cleanup()
        provider.kill()
        provider.wait()
