"""User endpoints for interactive Dask clusters (see :mod:`farside_gateway.clusters`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from farside_protocol.clusters import (
    ClusterCredentials,
    ClusterInfo,
    ClusterList,
    ClusterLogs,
    ClusterRequest,
    ClusterScale,
    GroupAdd,
    WorkerStop,
)

from ..clusters import store
from ..clusters.dashboard import dashboard_path, make_ticket
from ..clusters.logs import cluster_log_lines
from .deps import RuntimeDep, UserDep
from .jobs import json_response

router = APIRouter(tags=["clusters"])


def _shown(info: ClusterInfo, request: Request) -> ClusterInfo:
    """The cluster as its owner sees it: the dashboard at the gateway's own address (the
    one the caller used), not the scheduler's loopback port."""
    if not info.dashboard_link:
        return info
    base = str(request.base_url).rstrip("/")
    link = f"{base}{dashboard_path(info.name)}/status"
    return info.model_copy(update={"dashboard_link": link})


@router.post("/clusters", status_code=201, response_model=ClusterInfo)
async def create(body: ClusterRequest, who: UserDep, rt: RuntimeDep, request: Request) -> Response:
    """Start a cluster: its scheduler is listening when this returns; its workers are
    leases in the pool, which pilots take up as any job."""
    return json_response(_shown(await rt.clusters.create(who, body), request), 201)


@router.get("/clusters", response_model=ClusterList)
async def list_clusters(
    who: UserDep, rt: RuntimeDep, request: Request, ended: bool = False
) -> Response:
    """Your clusters, newest first (admins: everyone's); ``ended``: stopped ones too."""
    timeout = rt.config.clusters.client_timeout
    found = await rt.db.read(store.list_clusters, who.owner_filter, ended, timeout)
    return json_response(ClusterList(clusters=[_shown(c, request) for c in found]))


@router.get("/clusters/{name}", response_model=ClusterInfo)
async def get(name: str, who: UserDep, rt: RuntimeDep, request: Request) -> Response:
    """One cluster with its worker leases (live ones, then the latest ended ones)."""
    return json_response(_shown(await rt.clusters.info(who, name), request))


@router.get("/clusters/{name}/logs", response_model=ClusterLogs)
async def logs(
    name: str,
    who: UserDep,
    rt: RuntimeDep,
    tail: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> Response:
    """The last ``tail`` lines of each of the cluster's workers, prefixed ``[worker] ``."""
    row = await rt.db.read(store.get_cluster, name, who.owner_filter)
    info = await rt.clusters.info(who, name)
    lines = await cluster_log_lines(rt.db, rt.clusters.operator, row, info, tail)
    return json_response(ClusterLogs(lines=lines))


@router.get("/clusters/{name}/credentials", response_model=ClusterCredentials)
async def credentials(name: str, who: UserDep, rt: RuntimeDep, request: Request) -> Response:
    """The cluster's TLS certificate and key: a Dask client presents them to its scheduler."""
    cert, key = await rt.clusters.credentials(who, name)
    owner = (await rt.db.read(store.get_cluster, name, who.owner_filter)).owner
    ticket = make_ticket(rt.clusters.sealer, name, owner)
    return json_response(ClusterCredentials(tls_cert=cert, tls_key=key, dashboard_ticket=ticket))


@router.post("/clusters/{name}/scale", response_model=ClusterInfo)
async def scale(
    name: str, body: ClusterScale, who: UserDep, rt: RuntimeDep, request: Request
) -> Response:
    """Set a worker group's target; surplus workers are retired, then their leases end."""
    return json_response(
        _shown(await rt.clusters.scale(who, name, body.workers, body.group), request)
    )


@router.post("/clusters/{name}/groups", status_code=201, response_model=ClusterInfo)
async def add_group(
    name: str, body: GroupAdd, who: UserDep, rt: RuntimeDep, request: Request
) -> Response:
    """Add a worker group (e.g. GPU workers) with its own resources and target."""
    info = await rt.clusters.add_group(who, name, body.name, body.spec)
    return json_response(_shown(info, request), 201)


@router.post("/clusters/{name}/workers/stop", response_model=ClusterInfo)
async def stop_workers(
    name: str, body: WorkerStop, who: UserDep, rt: RuntimeDep, request: Request
) -> Response:
    """Stop named workers (what ``Adaptive`` retires); their groups' targets shrink."""
    return json_response(_shown(await rt.clusters.stop_workers(who, name, body.workers), request))


@router.post("/clusters/{name}/heartbeat", response_model=ClusterInfo)
async def heartbeat(name: str, who: UserDep, rt: RuntimeDep, request: Request) -> Response:
    """The client is alive; a cluster without heartbeats stops once it has no tasks."""
    return json_response(_shown(await rt.clusters.heartbeat(who, name), request))


@router.delete("/clusters/{name}", response_model=ClusterInfo)
async def shutdown(name: str, who: UserDep, rt: RuntimeDep, request: Request) -> Response:
    """Stop the cluster: its workers' leases are cancelled and its scheduler ends."""
    return json_response(_shown(await rt.clusters.shutdown(who, name), request))
