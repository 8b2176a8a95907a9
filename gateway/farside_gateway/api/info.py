"""Who am I, sites (and their run-time status) and pilots."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from farside_protocol import NotFound
from farside_protocol.models import (
    MAX_WALLTIME,
    PilotInfo,
    Resources,
    SiteInfo,
    SiteStatusChange,
    WhoAmI,
)

from ..pool import queries
from ..runtime import Runtime
from .deps import AdminDep, PrincipalDep, RuntimeDep, UserDep
from .jobs import JSON, json_response

router = APIRouter(tags=["info"])
_SITES = TypeAdapter(list[SiteInfo])
_PILOTS = TypeAdapter(list[PilotInfo])


@router.get("/whoami", response_model=WhoAmI)
async def whoami(who: PrincipalDep) -> WhoAmI:
    """The identity behind the token (any kind of token)."""
    kind = "admin" if who.admin else who.kind
    return WhoAmI(
        name=who.name,
        kind=kind,
        pilot_id=who.pilot_id,
        groups=list(who.groups),
        workflow_id=who.workflow_id,
    )


async def site_infos(rt: Runtime) -> list[SiteInfo]:
    counts = await rt.db.read(queries.pilot_counts)
    infos = []
    for s in rt.config.sites:
        health = rt.sites[s.name].health
        infos.append(
            SiteInfo(
                name=s.name,
                kind=s.plugin,
                status=s.status,
                status_reason=rt.site_statuses.reasons.get(s.name),
                healthy=health.healthy,
                last_error=health.last_error,
                slot=Resources(
                    cores=s.cores,
                    memory=s.memory,
                    gpus=s.gpus,
                    walltime=s.walltime or MAX_WALLTIME,
                    gpu_model=s.gpu_model,
                    arch=s.arch,
                ),
                environments=s.environments,
                pilots=counts.get(s.name, {}),
                min_warm=s.min_warm,
                max_pilots=s.max_pilots,
                max_queued=s.queue_limit,
            )
        )
    return infos


@router.get("/sites", response_model=list[SiteInfo])
async def sites(_: UserDep, rt: RuntimeDep) -> Response:
    """Configured sites: slot shape, status, health and live pilots by state."""
    return Response(_SITES.dump_json(await site_infos(rt)), media_type=JSON)


@router.put("/sites/{name}/status", response_model=SiteInfo)
async def set_site_status(
    name: str, body: SiteStatusChange, who: AdminDep, rt: RuntimeDep
) -> Response:
    """Set a site online, draining (no new work; held jobs finish) or offline (its pilots
    are stopped and their jobs retried on other sites). Admins only; survives restarts."""
    return json_response(await change_site_status(rt, name, body, who.name))


async def change_site_status(rt: Runtime, name: str, body: SiteStatusChange, by: str) -> SiteInfo:
    """Store and apply a site's new status (the REST API and the monitor's admins)."""
    if rt.config.site(name) is None:
        raise NotFound(f"site {name!r} is not configured; sites: {sorted(rt.sites)}")
    await rt.site_statuses.change(rt.db, name, body.status, body.reason, by, rt.now())
    rt.notifier.wake_work()  # the provisioner acts now, not at its next pass
    return next(i for i in await site_infos(rt) if i.name == name)


@router.get("/pilots", response_model=list[PilotInfo])
async def pilots(_: UserDep, rt: RuntimeDep, all: bool = False) -> Response:
    """Live pilots (``all=true``: the last 1,000 of any state)."""
    infos = await rt.db.read(queries.list_pilots, not all)
    return Response(_PILOTS.dump_json(infos), media_type=JSON)
