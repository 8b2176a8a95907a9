"""Gateway replicas on one PostgreSQL database take over each other's clusters.

A cluster's scheduler is a process started by one replica (its ``instance``). Each replica
writes its last sign of life into ``gateway_instances`` on every cluster pass
(:mod:`farside_gateway.replicas`). When one is gone (SIGKILLed, its pod deleted, a rolling
restart), its schedulers keep running for ``[clusters] orphan_grace`` seconds (see
``clusters.scheduler``). A replica not seen for ``adopt_after`` seconds is taken for gone:
the first other replica whose pass finds one of its live clusters claims it (one
conditional UPDATE, so only one wins), checks that the scheduler answers, and from then on
manages it: reconciles its workers, keeps it alive, stops it. Users, their Dask clients
and the workers notice nothing: the scheduler, its address, its data and its TLS
credentials stay the same.

A replica that stops cleanly while others are alive hands its clusters over at once: it
leaves the schedulers running and deletes its own row, so the next pass elsewhere adopts
them without waiting ``adopt_after``.

Every function takes a connection and runs inside the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from ..db.schema import AnyRow, clusters, gateway_instances
from .store import LIVE


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
