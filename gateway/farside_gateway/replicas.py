"""Which gateway replicas sharing one PostgreSQL database are alive, and which one leads.

Each replica writes its last sign of life into ``gateway_instances`` on every cluster pass
(``[clusters] check_interval``); one not seen for ``[clusters] adopt_after`` seconds is
gone. The live replica with the smallest name leads: only the leader provisions pilots, so
two replicas reading the same queue never both start the pilots it needs. Another takes
over within ``adopt_after`` of the leader's end. Other work (serving requests, reaping
leases, the clusters each replica manages) runs on every replica.

Every function takes a connection and runs inside the caller's transaction.
"""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import Connection, delete, func, insert, select, update

from .db.schema import gateway_instances


def instance_name(state_dir: Path) -> str:
    """This replica's name: its host and state directory (unique per process on a host)."""
    return f"{socket.gethostname()}:{state_dir.resolve()}"


def beat(conn: Connection, instance: str, now: float) -> None:
    """Record that ``instance`` is alive now."""
    changed = conn.execute(
        update(gateway_instances).where(gateway_instances.c.name == instance).values(seen_at=now)
    ).rowcount
    if not changed:
        conn.execute(insert(gateway_instances).values(name=instance, seen_at=now))


def forget(conn: Connection, instance: str) -> None:
    """``instance`` is gone for good: another may lead, and adopt its clusters, at once."""
    conn.execute(delete(gateway_instances).where(gateway_instances.c.name == instance))


def others_alive(conn: Connection, instance: str, since: float) -> bool:
    """Whether a replica other than ``instance`` was seen at ``since`` or later."""
    query = select(gateway_instances.c.name).where(
        gateway_instances.c.name != instance, gateway_instances.c.seen_at >= since
    )
    return conn.execute(query.limit(1)).first() is not None


def leader(conn: Connection, since: float) -> str | None:
    """The leading replica among those seen at ``since`` or later (None: none seen)."""
    query = select(func.min(gateway_instances.c.name)).where(gateway_instances.c.seen_at >= since)
    name = conn.execute(query).scalar()
    return str(name) if name is not None else None
