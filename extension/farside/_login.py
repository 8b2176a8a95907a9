"""``farside login``: an OIDC access token through the device authorization grant (RFC 8628).

The command asks the gateway (``GET /api/v1/auth``) which issuer and client to use, unless
``--issuer`` and ``--client-id`` say so, then prints a URL and a code for the user to enter
in any browser, and polls the issuer until they have approved. The token set is kept in
``oidc-token.json`` in the farside config directory (mode 0600)::

    {"issuer": ..., "client_id": ..., "token_endpoint": ..., "gateway_url": ...,
     "access_token": ..., "refresh_token": ..., "expires_at": 1767225600.0}

When the client resolves its token (:func:`farside.resolve_config`) and nothing else names
one, it uses this access token, first refreshing it with the refresh token when it expires
within :data:`REFRESH_MARGIN` seconds. The token is used only for the gateway it was
obtained for (``gateway_url``), or for any gateway after ``farside login --issuer``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from farside_protocol import API_PREFIX, ConfigurationError, FarsideError

from ._config import config_dir

__all__ = ["cached_token", "device_login", "login", "token_file"]

TOKEN_FILE = "oidc-token.json"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: refresh an access token that expires within this many seconds
REFRESH_MARGIN = 60.0
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class LoginError(FarsideError):
    """The login did not succeed; the message says why and what to do."""


def token_file() -> Path:
    return config_dir() / TOKEN_FILE


def _post(url: str, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.post(url, data=data, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise LoginError(f"cannot reach {url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def _get_json(url: str, what: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=TIMEOUT)
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


def _error_text(body: dict[str, Any]) -> str:
    text = str(body.get("error", "error"))
    return text + (f": {body['error_description']}" if body.get("error_description") else "")


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
    status, start = _post(str(endpoint), request)
    if status != 200 or "device_code" not in start:
        raise LoginError(f"the issuer {issuer} refused the login: {_error_text(start)}")
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
        status, body = _post(token_endpoint, poll)
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
        raise LoginError(f"the issuer {issuer} refused the login: {_error_text(body)}")
    raise LoginError("the code expired before the login was approved; run `farside login` again")


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by its owner only, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.chmod(tmp, 0o600)  # the umask may have narrowed it, never widened: make it exact
    os.replace(tmp, path)


def _record(tokens: dict[str, Any], base: dict[str, Any], now: float) -> dict[str, Any]:
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
    status, body = _post(
        str(record["token_endpoint"]),
        {
            "grant_type": "refresh_token",
            "refresh_token": str(record["refresh_token"]),
            "client_id": str(record["client_id"]),
        },
    )
    if status != 200 or "access_token" not in body:
        raise ConfigurationError(
            f"your login at {record.get('issuer')} could not be renewed ({_error_text(body)}); "
            "run `farside login` again"
        )
    fresh = _record(body, record, now)
    _write_private(token_file(), fresh)
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
    record = _record(tokens, base, now)
    _write_private(token_file(), record)
    return record


def login_main(url: str | None, issuer: str | None, client_id: str | None) -> int:
    """The ``farside login`` command; ``url``: the gateway (else the usual resolution)."""
    from ._config import resolve_url

    gateway_url = url or resolve_url()

    def say(line: str) -> None:
        print(line, flush=True)  # the user must see the code while we wait

    record = login(gateway_url, issuer, client_id, say=say)
    print(f"Logged in at {record['issuer']}; the token is in {token_file()}.")
    if gateway_url:
        from ._gateway import Gateway

        # the new token itself, not whatever FARSIDE_TOKEN or client.json would give
        with Gateway(gateway_url, record["access_token"], set_as_default=False) as gw:
            me = gw.whoami()
        groups = f" (groups: {', '.join(me.groups)})" if me.groups else ""
        print(f"The gateway at {gateway_url} knows you as {me.name}{groups}.")
    return 0
