"""dask-gateway's REST API, so the stock ``dask_gateway`` client works against farside.

``dask_gateway.Gateway("https://<gateway>/dask-gateway", proxy_address=..., auth=...)``
lists, creates, connects to, scales, adapts and stops farside clusters; the clusters are
farside's own (workers are pilots' leases), reached through the SNI proxy
(:mod:`farside_gateway.clusters.sni_proxy`). The paths and bodies are those the client
sends (``dask_gateway/client.py``, 2024-2026 releases): ``/api/version``,
``/api/v1/options``, ``/api/v1/clusters/...``. Errors are ``{"error": "message"}``, which
the client shows as they are.

Auth: a request without credentials gets 401, after which the client's auth adds its
header: ``Bearer <token>``, ``jupyterhub <hub API token>`` (``JupyterHubAuth``), or HTTP
Basic with the token as the password (``BasicAuth``; the user name is ignored: the token
says who it is).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from farside_protocol import FarsideError, Forbidden, Unauthorized, __version__
from farside_protocol.clusters import (
    DEFAULT_GROUP,
    ClusterInfo,
    ClusterRequest,
    WorkerGroupSpec,
)

from ..auth.tokens import Principal
from ..clusters import store
from ..clusters.adaptive import adapt_bounds
from ..clusters.dashboard import dashboard_path, make_ticket
from ..runtime import Runtime
from .deps import principal_of_token, runtime

PREFIX = "/dask-gateway"
router = APIRouter(prefix=PREFIX, tags=["dask-gateway"], include_in_schema=False)

GIB = 1024**3
STATUS = {
    "starting": "PENDING",
    "running": "RUNNING",
    "stopping": "STOPPING",
    "stopped": "STOPPED",
    "failed": "FAILED",
}


class _Options(BaseModel):
    """The cluster options farside offers, in dask-gateway's words (as daskhub's)."""

    model_config = ConfigDict(extra="forbid")

    worker_cores: int = Field(1, ge=1, le=256)
    worker_memory: float = Field(2.0, gt=0, description="GiB")
    worker_gpus: int = Field(0, ge=0)
    worker_walltime: str = Field("", description="e.g. '8 hours'; empty: the gateway's")
    environment: str = Field("", description="an environment the sites offer; empty: any")
    site: str = Field("", description="a site name; empty: brokerage decides")

    def group(self) -> WorkerGroupSpec:
        fields: dict[str, Any] = {
            "cores": self.worker_cores,
            "memory": int(self.worker_memory * GIB),
            "gpus": self.worker_gpus,
        }
        if self.worker_walltime:
            fields["walltime"] = self.worker_walltime
        if self.environment:
            fields["env"] = self.environment
        if self.site:
            fields["sites"] = [self.site]
        return WorkerGroupSpec(**fields)


_LABELS = {
    "worker_cores": "Worker cores",
    "worker_memory": "Worker memory (GiB)",
    "worker_gpus": "Worker GPUs",
    "worker_walltime": "Worker walltime",
    "environment": "Environment",
    "site": "Site",
}


def _option_specs() -> list[dict[str, Any]]:
    specs = []
    for name, field in _Options.model_fields.items():
        kind = {int: "int", float: "float", str: "string"}[field.annotation]  # type: ignore[index]
        spec: dict[str, Any] = {"type": kind}
        for rule in field.metadata:
            for bound, key in (("ge", "min"), ("gt", "min"), ("le", "max")):
                if getattr(rule, bound, None) is not None:
                    spec[key] = getattr(rule, bound)
        specs.append(
            {"field": name, "label": _LABELS[name], "default": field.default, "spec": spec}
        )
    return specs


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _who(request: Request) -> Principal:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip()
    if scheme.lower() == "basic":
        try:
            token = base64.b64decode(token).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            token = ""
    elif scheme.lower() not in ("bearer", "jupyterhub", "token"):
        token = ""
    if not token:
        raise Unauthorized("send a farside token: Bearer, jupyterhub, or Basic (as password)")
    who = await principal_of_token(runtime(request), token)
    if who.kind != "user":
        raise Unauthorized("clusters are for users; pilot and site tokens cannot have them")
    if who.workflow_id is not None:
        raise Forbidden("a workflow body's token cannot use Dask clusters")
    return who


def _report(rt: Runtime, info: ClusterInfo, creds: tuple[str, str] | None) -> dict[str, Any]:
    default = next((g.spec for g in info.groups if g.name == DEFAULT_GROUP), None)
    options = (
        {
            "worker_cores": default.cores,
            "worker_memory": default.memory / GIB,
            "worker_gpus": default.gpus,
            "environment": default.env or "",
        }
        if default
        else {}
    )
    route = None
    if info.dashboard_link and info.state == "running":
        ticket = make_ticket(rt.clusters.sealer, info.name, info.owner)
        route = f"{dashboard_path(info.name)}/status?{urlencode({'ticket': ticket})}"
    report: dict[str, Any] = {
        "name": info.name,
        "options": options,
        "status": STATUS[info.state],
        "dashboard_route": route,
        "start_time": _ms(info.created),
        "stop_time": None,
    }
    if creds is not None:
        report["tls_cert"], report["tls_key"] = creds
    return report


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


async def _answer(request: Request, handle: Any) -> Response:
    """Run ``handle(rt, who)``; farside's errors become dask-gateway's error bodies."""
    try:
        who = await _who(request)
        result = await handle(runtime(request), who)
    except FarsideError as exc:
        status = getattr(exc, "status", 500)
        answer = _error(status, getattr(exc, "message", str(exc)))
        if status == 401:
            answer.headers["WWW-Authenticate"] = 'Bearer realm="farside"'
        return answer
    return result if isinstance(result, Response) else JSONResponse(result)


@router.get("/api/version")
async def version() -> Response:
    return JSONResponse({"version": __version__})


@router.get("/api/v1/options")
async def options(request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        return {"cluster_options": _option_specs()}

    return await _answer(request, handle)


@router.get("/api/v1/clusters/")
async def list_clusters(request: Request, status: str | None = None) -> Response:
    wanted = {s.strip().upper() for s in (status or "PENDING,RUNNING").split(",")}

    async def handle(rt: Runtime, who: Principal) -> Any:
        ended = bool(wanted - {"PENDING", "RUNNING"})
        timeout = rt.config.clusters.client_timeout
        found = await rt.db.read(store.list_clusters, who.owner_filter, ended, timeout)
        return {c.name: _report(rt, c, None) for c in found if STATUS[c.state] in wanted}

    return await _answer(request, handle)


@router.post("/api/v1/clusters/")
async def create(request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        body = await request.json()
        try:
            chosen = _Options.model_validate(body.get("cluster_options") or {})
        except ValueError as exc:
            return _error(422, f"bad cluster options: {exc}")
        info = await rt.clusters.create(who, ClusterRequest(default=chosen.group()))
        return JSONResponse({"name": info.name}, status_code=201)

    return await _answer(request, handle)


@router.get("/api/v1/clusters/{name}")
async def report(name: str, request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        info = await rt.clusters.info(who, name)
        creds = await rt.clusters.credentials(who, name)
        return _report(rt, info, creds)

    return await _answer(request, handle)


@router.delete("/api/v1/clusters/{name}")
async def stop(name: str, request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        await rt.clusters.shutdown(who, name)
        return Response(status_code=204)

    return await _answer(request, handle)


@router.post("/api/v1/clusters/{name}/scale")
async def scale(name: str, request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        count = (await request.json()).get("count")
        if not isinstance(count, int) or count < 0:
            return _error(422, "count must be a whole number of workers, 0 or more")
        await rt.clusters.set_adapt(who, name, None)  # scaling by hand ends adapting
        await rt.clusters.scale(who, name, count, DEFAULT_GROUP)
        return {"ok": True}

    return await _answer(request, handle)


@router.post("/api/v1/clusters/{name}/adapt")
async def adapt(name: str, request: Request) -> Response:
    async def handle(rt: Runtime, who: Principal) -> Any:
        body = await request.json()
        low, high = body.get("minimum"), body.get("maximum")
        if any(v is not None and (not isinstance(v, int) or v < 0) for v in (low, high)):
            return _error(422, "minimum and maximum must be whole numbers, 0 or more")
        if low is not None and high is not None and high < low:
            return _error(422, f"maximum ({high}) is below minimum ({low})")
        bounds = adapt_bounds(low, high) if body.get("active", True) else None
        await rt.clusters.set_adapt(who, name, bounds)
        return {"ok": True}

    return await _answer(request, handle)


@router.get("/clusters/{name}/{path:path}")
async def dashboard(name: str, path: str, request: Request) -> Response:
    """dask-gateway links dashboards below its address: the dashboards live at the root."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{dashboard_path(name)}/{path}{query}", status_code=307)
