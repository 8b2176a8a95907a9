"""Who am I, sites and pilots."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from farside_pilot.protocol.models import PilotInfo, Resources, SiteInfo, WhoAmI

from ..pool import queries
from .deps import PrincipalDep, RuntimeDep, UserDep
from .jobs import JSON

router = APIRouter(tags=["info"])
_SITES = TypeAdapter(list[SiteInfo])
_PILOTS = TypeAdapter(list[PilotInfo])


@router.get("/whoami", response_model=WhoAmI)
async def whoami(who: PrincipalDep) -> WhoAmI:
    """The identity behind the token (any kind of token)."""
    kind = "admin" if who.admin else who.kind
    return WhoAmI(name=who.name, kind=kind, pilot_id=who.pilot_id)


@router.get("/sites", response_model=list[SiteInfo])
async def sites(_: UserDep, rt: RuntimeDep) -> Response:
    """Configured sites, their slot shape and their live pilots by state."""
    counts = await rt.db.read(queries.pilot_counts)
    infos = [
        SiteInfo(
            name=s.name,
            kind=s.plugin,
            status=s.status,
            slot=Resources(
                cores=s.cores,
                memory=s.memory,
                gpus=s.gpus,
                walltime=s.walltime or 30 * 86400,
            ),
            pilots=counts.get(s.name, {}),
            min_warm=s.min_warm,
            max_pilots=s.max_pilots,
        )
        for s in rt.config.sites
    ]
    return Response(_SITES.dump_json(infos), media_type=JSON)


@router.get("/pilots", response_model=list[PilotInfo])
async def pilots(_: UserDep, rt: RuntimeDep, all: bool = False) -> Response:
    """Live pilots (``all=true``: the last 1,000 of any state)."""
    infos = await rt.db.read(queries.list_pilots, not all)
    return Response(_PILOTS.dump_json(infos), media_type=JSON)
