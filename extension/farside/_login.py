"""``farside login``: an OIDC access token through the device authorization grant (RFC 8628).

The command asks the gateway (``GET /api/v1/auth``) which issuer and client to use, unless
``--issuer`` and ``--client-id`` say so, then prints a URL and a code for the user to enter
in any browser, and polls the issuer until they have approved. The token set goes to the
token cache, which keeps it fresh (:mod:`farside._tokens`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from farside_protocol import API_PREFIX

from ._client import Gateway
from ._config import resolve_url
from ._paths import token_file
from ._tokens import (
    ISSUER_TIMEOUT,
    LoginError,
    issuer_error,
    post_to_issuer,
    token_record,
    write_private,
)

__all__ = ["LoginError", "device_login", "login", "login_main"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=ISSUER_TIMEOUT)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LoginError(f"cannot read the {what} at {url}: {exc}") from exc
    if not isinstance(data, dict):
        raise LoginError(f"the {what} at {url} is not a JSON object")
    return data


def discover(issuer: str) -> dict[str, Any]:
    """The issuer's discovery document (RFC 8414 / OpenID Connect Discovery)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    return _get_json(url, "OIDC discovery document")


def gateway_login_info(gateway_url: str) -> dict[str, Any]:
    """What the gateway says about logging in: issuer, client_id, scopes, params."""
    info = _get_json(gateway_url.rstrip("/") + API_PREFIX + "/auth", "gateway's login info")
    oidc = info.get("oidc")
    if not isinstance(oidc, dict):
        raise LoginError(
            f"the gateway at {gateway_url} does not accept OIDC logins; ask its operator for a "
            "farside token, or name an issuer with --issuer and --client-id"
        )
    return oidc


def device_login(
    issuer: str,
    client_id: str,
    scopes: list[str],
    params: dict[str, str] | None = None,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the device authorization grant; return the issuer's token response plus
    ``token_endpoint``. ``say`` shows the user where to go and which code to enter."""
    meta = discover(issuer)
    endpoint = meta.get("device_authorization_endpoint")
    if not endpoint:
        raise LoginError(f"the issuer {issuer} does not offer the device authorization grant")
    request = {"client_id": client_id, "scope": " ".join(scopes), **(params or {})}
    status, start = post_to_issuer(str(endpoint), request)
    if status != 200 or "device_code" not in start:
        raise LoginError(f"the issuer {issuer} refused the login: {issuer_error(start)}")
    say(f"To log in, open {start['verification_uri']} in a browser and enter the code")
    say(f"    {start['user_code']}")
    if start.get("verification_uri_complete"):
        say(f"(or open {start['verification_uri_complete']})")
    say("Waiting for you to approve ...")
    interval = float(start.get("interval") or 5)
    deadline = time.monotonic() + float(start.get("expires_in") or 600)
    token_endpoint = str(meta["token_endpoint"])
    poll = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": client_id}
    while time.monotonic() < deadline:
        sleep(interval)
        status, body = post_to_issuer(token_endpoint, poll)
        if status == 200 and "access_token" in body:
            return {**body, "token_endpoint": token_endpoint}
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":  # RFC 8628 §3.5: wait 5 s longer from now on
            interval += 5
            continue
        if error == "expired_token":
            break
        if error == "access_denied":
            raise LoginError("the login was denied in the browser")
        raise LoginError(f"the issuer {issuer} refused the login: {issuer_error(body)}")
    raise LoginError("the code expired before the login was approved; run `farside login` again")


def login(
    gateway_url: str | None,
    issuer: str | None = None,
    client_id: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Log in (see the module docstring); returns the stored record."""
    scopes = ["openid", "profile", "offline_access"]
    params: dict[str, str] = {}
    if issuer is None:
        if gateway_url is None:
            raise LoginError(
                "no gateway to log in to: pass --url (or set FARSIDE_GATEWAY_URL), or name "
                "the issuer with --issuer and --client-id"
            )
        info = gateway_login_info(gateway_url)
        issuer = str(info["issuer"])
        client_id = client_id or info.get("client_id")
        scopes = list(info.get("scopes") or scopes)
        params = dict(info.get("params") or {})
    if not client_id:
        raise LoginError(f"name the OIDC client to log in as at {issuer} with --client-id")
    now = time.time()
    tokens = device_login(issuer, client_id, scopes, params, say=say)
    base = {
        "issuer": issuer,
        "client_id": client_id,
        "token_endpoint": tokens["token_endpoint"],
        "gateway_url": gateway_url.rstrip("/") if gateway_url else None,
    }
    record = token_record(tokens, base, now)
    write_private(token_file(), record)
    return record


def login_main(url: str | None, issuer: str | None, client_id: str | None) -> int:
    """The ``farside login`` command; ``url``: the gateway (else the usual resolution)."""
    gateway_url = url or resolve_url()

    def say(line: str) -> None:
        print(line, flush=True)  # the user must see the code while we wait

    record = login(gateway_url, issuer, client_id, say=say)
    print(f"Logged in at {record['issuer']}; the token is in {token_file()}.")
    if gateway_url:
        # the new token itself, not whatever FARSIDE_TOKEN or client.json would give
        with Gateway(gateway_url, record["access_token"], set_as_default=False) as gw:
            me = gw.whoami()
        groups = f" (groups: {', '.join(me.groups)})" if me.groups else ""
        print(f"The gateway at {gateway_url} knows you as {me.name}{groups}.")
    return 0
