"""Who is looking at the monitor: a browser logs in once with a token and keeps a cookie.

The same identities as the API: the login page takes any token the API takes (a farside
token from ``farside up`` or ``farside gateway token``, an OIDC access token from
``farside login``, a JupyterHub API token), asks the gateway who it belongs to, and sets an
HttpOnly cookie on ``/monitor`` holding who that is, sealed with the gateway's keys and
valid for :data:`SESSION_AGE`. The token itself is not kept. ``farside up`` prints a link
whose fragment carries the local token; the page posts it (a fragment never reaches a
server log).
"""

from __future__ import annotations

import html
import json
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from farside_protocol import ApiError

from ..api.deps import principal_of_token, runtime
from ..auth.tokens import Principal
from ..clusters.sealing import Sealer, SealError
from ..runtime import Runtime

COOKIE = "farside_monitor"
PATH = "/monitor"
SESSION_AGE = 12 * 3600.0

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>farside monitor: log in</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:4em auto}}
input{{width:100%;padding:.4em}} .error{{color:#b00}}</style></head>
<body><h1>farside monitor</h1>
<p>Paste a token the gateway knows: <code>farside up</code> prints a link that fills it
in; otherwise <code>cat ~/.config/farside/user.token</code>, an access token from
<code>farside login</code>, or your JupyterHub API token.</p>
{error}
<form method="post" action="{path}/login" id="login">
<input type="password" name="token" id="token" autocomplete="off" placeholder="token">
<p><button type="submit">Log in</button></p></form>
<script>
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {{
  history.replaceState(null, "", location.pathname);
  document.getElementById("token").value = hash.get("token");
  document.getElementById("login").submit();
}}
</script></body></html>"""


def seal_session(sealer: Sealer, who: Principal, now: float) -> str:
    claims = {"user": who.name, "admin": who.admin, "groups": list(who.groups), "at": now}
    return sealer.seal(json.dumps(claims))


def session_principal(sealer: Sealer, cookie: str | None) -> Principal | None:
    """Who a monitor cookie names, or None (no cookie, tampered, or older than a session)."""
    if not cookie:
        return None
    try:
        claims = json.loads(sealer.open_ticket(cookie, SESSION_AGE))
    except (SealError, ValueError):
        return None
    return Principal(
        kind="user", name=claims["user"], admin=claims["admin"], groups=tuple(claims["groups"])
    )


def _page(rt: Runtime | None, error: str = "", status: int = 200) -> HTMLResponse:
    shown = f'<p class="error">{html.escape(error)}</p>' if error else ""
    if rt is not None and rt.oidc is not None and rt.config.oidc.browser_client_id:
        issuer = html.escape(rt.oidc.issuer)
        shown += f'<p><a class="oidc" href="{PATH}/oidc">Log in at {issuer}</a>, or:</p>'
    return HTMLResponse(PAGE.format(error=shown, path=PATH), status_code=status)


def login_page_with_error(error: str, status: int) -> HTMLResponse:
    return _page(None, error, status)


@router.get(PATH + "/login")
async def login_page(request: Request) -> HTMLResponse:
    return _page(runtime(request))


def log_in_as(rt: Runtime, who: Principal) -> Response:
    """Send the browser to the monitor with a session cookie for ``who``."""
    answer = RedirectResponse(PATH + "/", status_code=303)
    answer.set_cookie(
        COOKIE,
        seal_session(rt.clusters.sealer, who, time.time()),
        max_age=int(SESSION_AGE),
        path=PATH,
        httponly=True,
        samesite="strict",
    )
    return answer


@router.post(PATH + "/login")
async def log_in(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    rt = runtime(request)
    if not token:
        return _page(rt, "Paste a token first.", 400)
    try:
        who = await principal_of_token(rt, token)
    except ApiError as exc:
        return _page(rt, f"The gateway refused that token: {exc.message}", 401)
    if who.kind != "user" or who.workflow_id is not None:
        return _page(rt, "That is a pilot's, a site's or a workflow's token: use your own.", 403)
    return log_in_as(rt, who)


@router.get(PATH + "/logout")
async def log_out() -> Response:
    answer = RedirectResponse(PATH + "/login", status_code=303)
    answer.delete_cookie(COOKIE, path=PATH)
    return answer
