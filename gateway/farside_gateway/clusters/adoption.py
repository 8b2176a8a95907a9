"""Gateway replicas on one PostgreSQL database take over each other's clusters.

A cluster's scheduler is a process started by one replica (its ``instance``). Each replica
writes its last sign of life into ``gateway_instances`` on every cluster pass. When one is
gone (SIGKILLed, its pod deleted, a rolling restart), its schedulers keep running for
``[clusters] orphan_grace`` seconds (see ``clusters.scheduler``); a replica that has not
been seen for ``adopt_after`` seconds is taken for gone, and the first other replica whose
pass finds one of its live clusters claims it (one conditional UPDATE, so only one wins),
checks that the scheduler answers, and from then on manages it: reconciles its workers,
keeps it alive, stops it. Users, their Dask clients and the workers notice nothing: the
scheduler, its address, its data and its TLS credentials stay the same.

A replica that stops cleanly while others are alive hands its clusters over at once: it
leaves the schedulers running and deletes its own row, so the next pass elsewhere adopts
them without waiting ``adopt_after``.

Every function takes a connection and runs inside the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select, update

from ..db.schema import AnyRow, clusters, gateway_instances
from .store import LIVE


def beat(conn: Connection, instance: str, now: float) -> None:
    """Record that ``instance`` is alive now."""
    changed = conn.execute(
        update(gateway_instances).where(gateway_instances.c.name == instance).values(seen_at=now)
    ).rowcount
    if not changed:
        conn.execute(insert(gateway_instances).values(name=instance, seen_at=now))


def forget(conn: Connection, instance: str) -> None:
    """``instance`` is gone for good: its clusters are anyone's to adopt now."""
    conn.execute(delete(gateway_instances).where(gateway_instances.c.name == instance))


def others_alive(conn: Connection, instance: str, since: float) -> bool:
    """Whether a replica other than ``instance`` was seen at ``since`` or later."""
    query = select(gateway_instances.c.name).where(
        gateway_instances.c.name != instance, gateway_instances.c.seen_at >= since
    )
    return conn.execute(query.limit(1)).first() is not None


def orphans(conn: Connection, instance: str, since: float) -> list[AnyRow]:
    """Live clusters of replicas other than ``instance`` not seen since ``since``."""
    alive = select(gateway_instances.c.name).where(gateway_instances.c.seen_at >= since)
    query = select(clusters).where(
        clusters.c.state.in_((*LIVE, "stopping")),
        clusters.c.instance != instance,
        clusters.c.instance.not_in(alive),
    )
    return list(conn.execute(query.order_by(clusters.c.created_at)).all())


def claim(conn: Connection, name: str, previous: str, instance: str) -> bool:
    """Make ``instance`` the cluster's manager if ``previous`` still is; True if it won."""
    won = conn.execute(
        update(clusters)
        .where(clusters.c.name == name, clusters.c.instance == previous)
        .values(instance=instance)
    ).rowcount
    return bool(won)
