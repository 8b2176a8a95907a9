"""Clusters' Dask dashboards, proxied to their owners at ``/clusters/{name}/...``.

Pages, their static files and bokeh's websocket all go through here; the scheduler serves
its dashboard only on loopback (``[clusters] dashboard_host``). A caller shows who it is
with a bearer token, or, from a browser, with the ticket in ``cluster.dashboard_link``
(see :mod:`farside_gateway.clusters.dashboard`), which becomes a cookie for the cluster's
path: the pages' own requests carry it.

Why httpx and websockets: both are there already (the client's HTTP library, and uvicorn's
websocket implementation), and a dashboard is a handful of pages and one websocket per
open plot, which a streaming proxy of a few dozen lines carries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import websockets
from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import RedirectResponse, StreamingResponse
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from farside_protocol import FarsideError, ServiceUnavailable, Unauthorized

from ..auth.tokens import Principal
from ..clusters.dashboard import dashboard_path, dashboard_target
from ..runtime import Runtime
from .deps import principal, runtime

router = APIRouter(tags=["dashboards"], include_in_schema=False)

COOKIE = "farside-dashboard"
# hop-by-hop and connection-level headers are the proxy's own business, not forwarded
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "cookie",
}


async def _caller(request: Request) -> Principal | None:
    if not request.headers.get("authorization"):
        return None
    who = await principal(request)
    if who.kind != "user" or who.workflow_id is not None:
        raise Unauthorized("dashboards are for users")
    return who


@router.api_route("/clusters/{name}/{path:path}", methods=["GET", "HEAD", "POST"])
async def dashboard(name: str, path: str, request: Request) -> Response:
    """A page or file of the cluster's dashboard (e.g. ``/clusters/{name}/status``)."""
    rt = runtime(request)
    ticket = request.query_params.get("ticket")
    target = await dashboard_target(
        rt.db,
        rt.clusters.sealer,
        name,
        await _caller(request),
        ticket or request.cookies.get(COOKIE),
    )
    if ticket:
        # keep the ticket out of the address bar and the pages' links: a cookie for this
        # cluster's path carries it from now on
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "ticket"]
        clean = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        answer = RedirectResponse(clean, status_code=303)
        answer.set_cookie(
            COOKIE,
            ticket,
            path=dashboard_path(name) + "/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return answer
    return await _forward(rt, request, f"{target}{dashboard_path(name)}/{path}")


async def _forward(rt: Runtime, request: Request, url: str) -> Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
    try:
        upstream = await client.send(
            client.build_request(
                request.method,
                url,
                params=str(request.query_params),
                headers=headers,
                content=await request.body(),
            ),
            stream=True,
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ServiceUnavailable(f"the dashboard does not answer: {exc}") from exc

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=kept)


@router.websocket("/clusters/{name}/{path:path}")
async def dashboard_socket(name: str, path: str, websocket: WebSocket) -> None:
    """Bokeh's websocket of a dashboard page: bytes both ways until either side closes."""
    rt: Runtime = websocket.app.state.runtime
    try:
        target = await dashboard_target(
            rt.db, rt.clusters.sealer, name, None, websocket.cookies.get(COOKIE)
        )
    except FarsideError:
        await websocket.close(code=1008)  # policy violation: no ticket for this cluster
        return
    query = websocket.url.query
    url = target.replace("http://", "ws://", 1) + f"{dashboard_path(name)}/{path}"
    url += f"?{query}" if query else ""
    protocols = websocket.scope.get("subprotocols") or None
    try:
        upstream = await ws_connect(url, subprotocols=protocols, max_size=None)
    except (OSError, websockets.InvalidHandshake):
        await websocket.close(code=1011)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    async with upstream:
        await _pump(websocket, upstream)


async def _pump(browser: WebSocket, upstream: ClientConnection) -> None:
    async def to_upstream() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await browser.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                await upstream.send(data if data is not None else message.get("text") or "")

    async def to_browser() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in upstream:
                if isinstance(data, bytes):
                    await browser.send_bytes(data)
                else:
                    await browser.send_text(data)

    tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_browser())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    with contextlib.suppress(Exception):
        await browser.close()
