"""Logging in to the monitor at the OIDC issuer (IAM): the authorization code flow with
PKCE, for a public client (``oidc.browser_client_id``).

The browser goes to the issuer with a random ``state`` and a PKCE challenge; what the
gateway needs to finish (the state and the verifier) waits in a short-lived sealed cookie.
The issuer sends the browser back to ``/monitor/oauth_callback`` with a code, which the
gateway swaps for an access token. That token is checked like any other API token (issuer,
audience, signature; the user's name and groups from its claims), and the browser gets the
monitor's session cookie; the token is not kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from farside_protocol import ApiError

from ..api.deps import principal_of_token, runtime
from ..clusters.sealing import SealError
from ..runtime import Runtime
from .login import PATH, log_in_as, login_page_with_error

FLOW_COOKIE = "farside_monitor_login"
#: seconds a login at the issuer may take (the password, the consent page)
FLOW_AGE = 600.0

router = APIRouter(include_in_schema=False)


def callback_url(rt: Runtime) -> str:
    return f"{rt.public_url}{PATH}/oauth_callback"


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@router.get(PATH + "/oidc")
async def start(request: Request) -> Response:
    rt = runtime(request)
    client_id = rt.config.oidc.browser_client_id
    if rt.oidc is None or not client_id:
        return login_page_with_error("This gateway has no OIDC login for browsers.", 404)
    try:
        endpoints = await rt.oidc.endpoints()
    except ApiError as exc:
        return login_page_with_error(exc.message, 502)
    state, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": callback_url(rt),
        "scope": " ".join(rt.config.oidc.login_scopes),
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
        **rt.config.oidc.login_params,
    }
    answer = RedirectResponse(f"{endpoints['authorization_endpoint']}?{urlencode(query)}", 303)
    flow = json.dumps({"state": state, "verifier": verifier, "at": time.time()})
    # Lax, not Strict: the issuer's redirect back is a navigation from another site
    answer.set_cookie(
        FLOW_COOKIE,
        rt.clusters.sealer.seal(flow),
        max_age=int(FLOW_AGE),
        path=PATH,
        httponly=True,
        samesite="lax",
    )
    return answer


@router.get(PATH + "/oauth_callback")
async def finish(request: Request) -> Response:
    rt = runtime(request)
    params = request.query_params
    if "error" in params:
        why = params.get("error_description") or params["error"]
        return login_page_with_error(f"The OIDC issuer did not log you in: {why}", 401)
    try:
        sealed = request.cookies.get(FLOW_COOKIE) or ""
        flow = json.loads(rt.clusters.sealer.open_ticket(sealed, FLOW_AGE))
    except (SealError, ValueError):
        return login_page_with_error("That login took too long or was not started here.", 400)
    if not secrets.compare_digest(str(flow["state"]), params.get("state", "")):
        return login_page_with_error("The issuer's answer does not match this login.", 400)
    assert rt.oidc is not None
    form = {
        "grant_type": "authorization_code",
        "code": params.get("code", ""),
        "redirect_uri": callback_url(rt),
        "client_id": str(rt.config.oidc.browser_client_id),
        "code_verifier": flow["verifier"],
    }
    try:
        endpoints = await rt.oidc.endpoints()
        async with httpx.AsyncClient(timeout=10.0) as client:
            answer = await client.post(endpoints["token_endpoint"], data=form)
        answer.raise_for_status()
        token = str(answer.json()["access_token"])
    except ApiError as exc:
        return login_page_with_error(exc.message, 502)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return login_page_with_error(f"The OIDC issuer refused the login: {exc}", 502)
    try:
        who = await principal_of_token(rt, token)
    except ApiError as exc:
        return login_page_with_error(f"The gateway refused that login: {exc.message}", 401)
    done = log_in_as(rt, who)
    done.delete_cookie(FLOW_COOKIE, path=PATH)
    return done
