"""User endpoints for interactive Dask clusters (see :mod:`farside_gateway.clusters`)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from farside_pilot.protocol.clusters import (
    ClusterCredentials,
    ClusterInfo,
    ClusterList,
    ClusterRequest,
    ClusterScale,
    GroupAdd,
    WorkerStop,
)

from ..clusters import store
from .deps import RuntimeDep, UserDep
from .jobs import json_response

router = APIRouter(tags=["clusters"])


@router.post("/clusters", status_code=201, response_model=ClusterInfo)
async def create(body: ClusterRequest, who: UserDep, rt: RuntimeDep) -> Response:
    """Start a cluster: its scheduler is listening when this returns; its workers are
    leases in the pool, which pilots take up as any job."""
    return json_response(await rt.clusters.create(who, body), 201)


@router.get("/clusters", response_model=ClusterList)
async def list_clusters(who: UserDep, rt: RuntimeDep, ended: bool = False) -> Response:
    """Your clusters, newest first (admins: everyone's); ``ended``: stopped ones too."""
    timeout = rt.config.clusters.client_timeout
    found = await rt.db.read(store.list_clusters, who.owner_filter, ended, timeout)
    return json_response(ClusterList(clusters=found))


@router.get("/clusters/{name}", response_model=ClusterInfo)
async def get(name: str, who: UserDep, rt: RuntimeDep) -> Response:
    """One cluster with its worker leases (live ones, then the latest ended ones)."""
    return json_response(await rt.clusters.info(who, name))


@router.get("/clusters/{name}/credentials", response_model=ClusterCredentials)
async def credentials(name: str, who: UserDep, rt: RuntimeDep) -> Response:
    """The cluster's TLS certificate and key: a Dask client presents them to its scheduler."""
    cert, key = await rt.clusters.credentials(who, name)
    return json_response(ClusterCredentials(tls_cert=cert, tls_key=key))


@router.post("/clusters/{name}/scale", response_model=ClusterInfo)
async def scale(name: str, body: ClusterScale, who: UserDep, rt: RuntimeDep) -> Response:
    """Set a worker group's target; surplus workers are retired, then their leases end."""
    return json_response(await rt.clusters.scale(who, name, body.workers, body.group))


@router.post("/clusters/{name}/groups", status_code=201, response_model=ClusterInfo)
async def add_group(name: str, body: GroupAdd, who: UserDep, rt: RuntimeDep) -> Response:
    """Add a worker group (e.g. GPU workers) with its own resources and target."""
    return json_response(await rt.clusters.add_group(who, name, body.name, body.spec), 201)


@router.post("/clusters/{name}/workers/stop", response_model=ClusterInfo)
async def stop_workers(name: str, body: WorkerStop, who: UserDep, rt: RuntimeDep) -> Response:
    """Stop named workers (what ``Adaptive`` retires); their groups' targets shrink."""
    return json_response(await rt.clusters.stop_workers(who, name, body.workers))


@router.post("/clusters/{name}/heartbeat", response_model=ClusterInfo)
async def heartbeat(name: str, who: UserDep, rt: RuntimeDep) -> Response:
    """The client is alive; a cluster without heartbeats stops once it has no tasks."""
    return json_response(await rt.clusters.heartbeat(who, name))


@router.delete("/clusters/{name}", response_model=ClusterInfo)
async def shutdown(name: str, who: UserDep, rt: RuntimeDep) -> Response:
    """Stop the cluster: its workers' leases are cancelled and its scheduler ends."""
    return json_response(await rt.clusters.shutdown(who, name))
