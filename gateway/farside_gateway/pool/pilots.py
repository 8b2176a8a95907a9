"""Pilot records: created when a site submits a pilot, completed when the pilot registers.

Pilot states: ``submitted`` (batch job queued) → ``running`` (registered) → ``retiring``
(told to leave) → ``exited`` | ``lost`` (silent, or its batch job vanished) | ``failed``
(never registered).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from farside_protocol import Conflict, Forbidden, NotFound
from farside_protocol.pilot_api import PilotRegistration
from farside_protocol.states import PilotState

from ..auth.tokens import Principal, issue_token, revoke_pilot_tokens
from ..db.schema import AnyRow, pilots

PILOT_TOKEN_TTL = 14 * 86400.0
#: States of a pilot that may still run or report work.
LIVE_PILOT_STATES = PilotState.live()


def create_submitted(conn: Connection, site: str, now: float) -> tuple[int, str]:
    """A site is about to submit a pilot: make its record and a one-pilot token."""
    pilot_id = int(
        conn.execute(
            insert(pilots)
            .values(site=site, state=PilotState.SUBMITTED, submitted_at=now, last_seen=now)
            .returning(pilots.c.id)
        ).scalar_one()
    )
    token = issue_token(
        conn,
        "pilot",
        site,
        pilot_id=pilot_id,
        ttl=PILOT_TOKEN_TTL,
        description=f"registration of pilot {pilot_id}",
    )
    return pilot_id, token


def set_batch_id(conn: Connection, pilot_id: int, batch_id: str) -> None:
    conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(batch_id=batch_id))


def register(
    conn: Connection, who: Principal, reg: PilotRegistration, now: float
) -> tuple[int, str]:
    """Complete (or create, for a site token) a pilot record; return its id and own token."""
    if who.kind == "user":
        raise Forbidden("user tokens cannot register pilots; use a site or pilot token")
    if reg.site != who.name:
        raise Forbidden(f"this token is for site {who.name!r}, not {reg.site!r}")
    values: dict[str, Any] = {
        "state": PilotState.RUNNING,
        "hostname": reg.hostname,
        "pid": reg.pid,
        "cores": reg.cores,
        "memory": reg.memory,
        "gpus": reg.gpus,
        "walltime_end": now + reg.walltime if reg.walltime else None,
        "registered_at": now,
        "last_seen": now,
    }
    if reg.batch_id:
        values["batch_id"] = reg.batch_id
    if who.kind == "pilot":
        if reg.pilot_id is not None and reg.pilot_id != who.pilot_id:
            raise Forbidden(f"this token belongs to pilot {who.pilot_id}, not {reg.pilot_id}")
        assert who.pilot_id is not None
        pilot_id = who.pilot_id
        updated = conn.execute(
            update(pilots)
            .where(pilots.c.id == pilot_id, pilots.c.state == PilotState.SUBMITTED)
            .values(**values)
        )
        if updated.rowcount != 1:
            raise Conflict(f"pilot {pilot_id} has already registered or was given up")
        # the registration token sat in the batch system's environment; retire it
        revoke_pilot_tokens(conn, pilot_id)
    else:
        pilot_id = int(
            conn.execute(
                insert(pilots)
                .values(site=reg.site, submitted_at=now, **values)
                .returning(pilots.c.id)
            ).scalar_one()
        )
    token = issue_token(conn, "pilot", reg.site, pilot_id=pilot_id, ttl=PILOT_TOKEN_TTL)
    return pilot_id, token


def get_pilot(conn: Connection, pilot_id: int) -> AnyRow:
    row = conn.execute(select(pilots).where(pilots.c.id == pilot_id)).first()
    if row is None:
        raise NotFound(f"pilot {pilot_id} not found")
    return row


def decide_retire(conn: Connection, pilot_id: int, site: str, min_warm: int) -> bool:
    """Let an idle pilot go unless that would leave its site below the warm minimum."""
    staying = conn.execute(
        select(func.count()).where(
            pilots.c.site == site, pilots.c.state.in_([PilotState.SUBMITTED, PilotState.RUNNING])
        )
    ).scalar_one()
    if staying <= min_warm:
        return False
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id, pilots.c.state == PilotState.RUNNING)
        .values(state=PilotState.RETIRING)
    )
    return True


def site_pilots(conn: Connection, site: str, states: tuple[str, ...]) -> list[AnyRow]:
    return list(
        conn.execute(select(pilots).where(pilots.c.site == site, pilots.c.state.in_(states))).all()
    )


def give_up(conn: Connection, pilot_id: int, state: str, reason: str, now: float) -> None:
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id)
        .values(state=state, reason=reason, ended_at=now)
    )
    revoke_pilot_tokens(conn, pilot_id)
