"""A real OIDC provider for tests, and a browser stand-in that approves device logins.

``scripts/oidc.sh`` installs and starts panva's ``oidc-provider`` with the users and clients
in ``scripts/oidc/``; the ``oidc_issuer`` fixture runs it once per session. Tokens come
from the real device authorization grant: :func:`approve_device` fills in the provider's
HTML forms (user code, confirmation, login, consent) over HTTP as a user's browser would.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from support.harness import run_script

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "admin": "admin-pw"}
CLIENT = "farside-cli"
SHORT_CLIENT = "farside-short"  # its access tokens live 3 s
OTHER_CLIENT = "other-app"  # its access tokens are for audience "other"
OPAQUE_CLIENT = "farside-opaque"  # its access tokens are opaque, as IAM may issue
OPAQUE_SHORT_CLIENT = "farside-opaque-short"  # opaque, and they live 3 s
#: the gateway's own confidential client, for introspection (RFC 7662)
GATEWAY_CLIENT = ("farside-gateway", "local-gateway-secret-not-for-production")
SCOPE = "openid profile groups offline_access farside"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def start_provider(port: int | None = None) -> str:
    """Run ``scripts/oidc.sh`` (on ``port``, default its own); return the issuer URL."""
    return run_script(
        "oidc.sh",
        timeout=300,
        fails="could not start the OIDC provider; it needs Node.js 20+ and npm with access "
        "to the npm registry",
        env=None if port is None else {"FARSIDE_OIDC_PORT": str(port)},
    )


@pytest.fixture(scope="session")
def oidc_issuer() -> str:
    """The issuer URL of the running test provider."""
    return start_provider()


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs with their values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = {"action": a.get("action", ""), "method": a.get("method", "get")}
            self._current["fields"] = {}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            self._current["fields"][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def approve_device(verification_uri: str, user_code: str, user: str, password: str = "") -> str:
    """Approve a device login as ``user`` would in a browser: enter the code, confirm, sign
    in, allow. Returns the final page's text; fails if the provider does not say success."""
    password = password or PASSWORDS[user]
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(verification_uri)
        for _ in range(8):
            if "Sign-in Success" in page.text:
                return page.text
            parser = _Forms()
            parser.feed(page.text)
            assert parser.forms, f"no form on {page.url} ({page.status_code}):\n{page.text}"
            form = parser.forms[0]
            fields: dict[str, str] = dict(form["fields"])
            for name, value in (("user_code", user_code), ("username", user)):
                if name in fields:
                    fields[name] = value
            if "password" in fields:
                fields["password"] = password
            page = browser.post(urljoin(str(page.url), form["action"]), data=fields)
        raise AssertionError(f"the device login did not finish; last page:\n{page.text}")


def start_device_login(issuer: str, client_id: str = CLIENT, scope: str = SCOPE) -> dict[str, Any]:
    """The device authorization response (device_code, user_code, verification_uri, ...)."""
    meta = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    response = httpx.post(
        meta["device_authorization_endpoint"], data={"client_id": client_id, "scope": scope}
    )
    response.raise_for_status()
    return {**response.json(), "token_endpoint": meta["token_endpoint"]}


def device_tokens(
    issuer: str, user: str, client_id: str = CLIENT, scope: str = SCOPE
) -> dict[str, Any]:
    """A token response (access_token, refresh_token, ...) for ``user``, through the real
    device authorization grant."""
    start = start_device_login(issuer, client_id, scope)
    approve_device(start["verification_uri"], start["user_code"], user)
    for _ in range(50):
        response = httpx.post(
            start["token_endpoint"],
            data={
                "grant_type": DEVICE_GRANT,
                "device_code": start["device_code"],
                "client_id": client_id,
            },
        )
        body: dict[str, Any] = response.json()
        if response.status_code == 200:
            return body
        assert body.get("error") in ("authorization_pending", "slow_down"), body
        time.sleep(0.2)
    raise AssertionError("the provider did not issue tokens for an approved device login")


def access_token(issuer: str, user: str, client_id: str = CLIENT) -> str:
    token: str = device_tokens(issuer, user, client_id)["access_token"]
    return token


def revoke(issuer: str, token: str, client_id: str) -> None:
    """Revoke a token at the provider (RFC 7009) as its public client; with this provider,
    revoking an access token revokes its whole grant."""
    meta = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
    form = {"token": token, "client_id": client_id}
    response = httpx.post(meta["revocation_endpoint"], data=form)
    assert response.status_code == 200, response.text
