"""Who is calling: bearer-token dependencies for user and pilot endpoints.

A bearer token with a farside prefix (``fsu_``, ``fss_``, ``fsp_``) is looked up in the
gateway's token table; any other is checked as an OIDC access token when ``[oidc]`` names
an issuer (:mod:`farside_gateway.auth.oidc`); one that is not a JWT is checked as a
JupyterHub API token when ``[hub]`` names a hub (:mod:`farside_gateway.auth.hub`), and, if
the hub does not know it and ``oidc.introspection`` is on, as an opaque OIDC access token
(:mod:`farside_gateway.auth.introspection`). The hub is asked first: it is part of the
same deployment, and holds users' OIDC tokens anyway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from farside_protocol import Forbidden, Unauthorized
from farside_protocol.models import API_PREFIX

from ..auth.hub import UnknownHubToken, looks_like_jwt
from ..auth.oidc import is_farside_token
from ..auth.tokens import Principal, lookup_token
from ..runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer <token>); the local "
            "platform writes yours to the farside config directory"
        )
    return await principal_of_token(runtime(request), token.strip())


async def principal_of_token(rt: Runtime, token: str) -> Principal:
    """Who holds ``token``: a farside token, an OIDC access token or a hub API token."""
    if not is_farside_token(token) and rt.hub is not None and not looks_like_jwt(token):
        try:
            return await rt.hub.principal(token)
        except UnknownHubToken as unknown:
            if rt.oidc is None or not rt.oidc.config.introspection:
                raise
            try:
                return await rt.oidc.principal(token)
            except Unauthorized as exc:
                raise Unauthorized(f"{exc.message} ({unknown.message})") from None
    if not is_farside_token(token) and rt.oidc is not None:
        return await rt.oidc.principal(token)
    now = rt.now()
    cached, who = rt.tokens.get(token, now)
    if not cached:
        who = await rt.db.read(lookup_token, token, now)
        rt.tokens.put(token, who, now)
    if who is None:
        raise Unauthorized(
            "unknown or expired token; get a new one (e.g. restart `farside up`, or "
            "`farside gateway token`)"
        )
    return who


#: what a workflow body's token may do (method, route): follow and submit jobs, report
#: progress. It acts for the run's owner, but cannot start clusters, change sites or make
#: tokens; an API added later is closed to it until listed here.
WORKFLOW_SCOPE = frozenset(
    {
        ("GET", "/whoami"),
        ("GET", "/auth"),
        ("GET", "/sites"),
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("POST", "/jobs/cancel"),
        ("GET", "/jobs/{job_id}"),
        ("GET", "/jobs/{job_id}/result"),
        ("GET", "/jobs/{job_id}/logs"),
        ("GET", "/jobs/{job_id}/logs/stream"),
        ("GET", "/events"),
        ("GET", "/workflows/{workflow_id}"),
        ("POST", "/workflows/{workflow_id}/report"),
    }
)


def _check_workflow_scope(request: Request, who: Principal) -> None:
    route = request.scope.get("route")
    path = getattr(route, "path", "").removeprefix(API_PREFIX)
    if (request.method, path) not in WORKFLOW_SCOPE:
        raise Forbidden(
            f"a workflow body's token (run {who.workflow_id}) may submit and follow jobs "
            f"only; {request.method} {path} is not open to it"
        )


async def user(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    if who.kind != "user":
        raise Forbidden("this endpoint is for users; pilot and site tokens cannot use it")
    if who.workflow_id is not None:
        _check_workflow_scope(request, who)
    return who


async def admin(who: Annotated[Principal, Depends(user)]) -> Principal:
    if not who.admin:
        raise Forbidden(
            "this endpoint is for admins; create an admin token with "
            "`farside gateway token --user NAME --admin`"
        )
    return who


def pilot_of(who: Principal, pilot_id: int) -> Principal:
    if who.kind != "pilot" or who.pilot_id != pilot_id:
        raise Forbidden(f"this token may not act for pilot {pilot_id}")
    return who


RuntimeDep = Annotated[Runtime, Depends(runtime)]
PrincipalDep = Annotated[Principal, Depends(principal)]
UserDep = Annotated[Principal, Depends(user)]
AdminDep = Annotated[Principal, Depends(admin)]
