"""Scouts → avalanche: the first jobs of a large map run alone and size the rest.

At submission, a map (jobs of one request sharing a group) of more than
``scouts.threshold`` jobs sends its first ``scouts.count`` jobs ahead as scouts; the others
wait in ``pending``. Once every scout has ended, the waiting jobs' memory and walltime —
those the user left to the gateway — are set from what the finished scouts measured
(a percentile of their peak RSS and wall time, times a margin, never below a floor and
never above what the largest fitting site offers), and they are queued. The correction is
kept in the job (``adjusted``, shown in the job list) and said in the event that queues it.

Scouts that all failed or were cancelled measure nothing: the rest are queued unchanged
(their own failures then speak for themselves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, and_, select, update

from farside_protocol import JobState, format_memory, format_walltime
from farside_protocol.models import MAX_WALLTIME
from farside_protocol.states import TERMINAL_STATES

from ..broker.match import NEED_COLUMNS, Need, fits
from ..config import ScoutConfig, SiteConfig
from ..db.schema import AnyRow, jobs
from .transaction import REF_COLUMNS, JobRef, PoolTransaction

S = JobState
SCOUT, WAITING = 1, 2
_TERMINAL = [s.value for s in TERMINAL_STATES]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1, 2, 3, 4], 75)
    3
    >>> percentile([5], 95)
    5
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def waiting_maps(conn: Connection) -> list[tuple[str, str]]:
    """(owner, group) of maps whose jobs wait for scouts."""
    return [
        (row.owner, row.group_name)
        for row in conn.execute(
            select(jobs.c.owner, jobs.c.group_name)
            .where(jobs.c.scout == WAITING, jobs.c.state == S.PENDING.value)
            .group_by(jobs.c.owner, jobs.c.group_name)
        )
    ]


def release_scouted(tx: PoolTransaction, rules: ScoutConfig, sites: Sequence[SiteConfig]) -> int:
    """Queue the waiting jobs of every map whose scouts have all ended; return how many."""
    conn = tx.conn
    released = 0
    for owner, group in waiting_maps(conn):
        of_map = and_(jobs.c.owner == owner, jobs.c.group_name == group)
        scouts = conn.execute(
            select(jobs.c.state, jobs.c.max_rss, jobs.c.wall_time).where(
                of_map, jobs.c.scout == SCOUT
            )
        ).all()
        if any(row.state not in _TERMINAL for row in scouts):
            continue
        done = [r for r in scouts if r.state == S.FINISHED.value]
        released += _release(tx, owner, group, done, rules, sites)
    return released


def _release(
    tx: PoolTransaction,
    owner: str,
    group: str,
    done: Sequence[AnyRow],
    rules: ScoutConfig,
    sites: Sequence[SiteConfig],
) -> int:
    conn = tx.conn
    waiting = and_(
        jobs.c.owner == owner,
        jobs.c.group_name == group,
        jobs.c.scout == WAITING,
        jobs.c.state == S.PENDING.value,
    )
    sample = conn.execute(select(*NEED_COLUMNS).where(waiting).limit(1)).first()
    note = "scouts measured nothing (none finished); resources unchanged"
    rss = [r.max_rss for r in done if r.max_rss]
    wall = [r.wall_time for r in done if r.wall_time is not None]
    if sample is not None and rss and wall:
        need = Need.of_row(sample)
        fitting = [s for s in sites if fits(s, replace(need, memory=0, walltime=0))]
        max_memory = max((s.memory for s in fitting), default=sample.memory)
        max_walltime = max((s.walltime or MAX_WALLTIME for s in fitting), default=MAX_WALLTIME)
        memory = math.ceil(percentile(rss, rules.memory_percentile) * rules.memory_margin)
        memory = min(max_memory, max(rules.min_memory, memory))
        walltime = math.ceil(percentile(wall, rules.walltime_percentile) * rules.walltime_margin)
        walltime = min(max_walltime, max(rules.min_walltime, walltime))
        basis = (
            f"from {len(done)} scouts: peak RSS p{rules.memory_percentile:g} "
            f"{format_memory(int(percentile(rss, rules.memory_percentile)))}, wall time "
            f"p{rules.walltime_percentile:g} {percentile(wall, rules.walltime_percentile):.1f}s"
        )
        notes = {
            "memory": f"memory {format_memory(sample.memory)} → {format_memory(memory)}",
            "walltime": f"walltime {format_walltime(sample.walltime)} → "
            f"{format_walltime(walltime)}",
        }
        values = {"memory": memory, "walltime": walltime}
        # each job gets what it left to the gateway, and a note saying just that
        for tunable in ("memory,walltime", "memory", "walltime"):
            parts = tunable.split(",")
            conn.execute(
                update(jobs)
                .where(waiting, jobs.c.tunable == tunable)
                .values(
                    adjusted=", ".join(notes[p] for p in parts) + f" ({basis})",
                    **{p: values[p] for p in parts},
                )
            )
    rows = conn.execute(select(*REF_COLUMNS, jobs.c.adjusted).where(waiting)).all()
    # jobs with the same correction are queued together: one statement each
    by_reason: dict[str, list[JobRef]] = {}
    for row in rows:
        by_reason.setdefault(f"scouts done: {row.adjusted or note}", []).append(JobRef.of(row))
    for reason, refs in by_reason.items():
        tx.move(refs, S.QUEUED, reason=reason, values={"queued_at": tx.now})
    return len(rows)
