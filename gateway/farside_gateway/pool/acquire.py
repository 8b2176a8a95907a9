"""Acquiring: a pilot asks for work and the pool hands it the best jobs that fit its slot,
user by user in fair-share order, within the per-user caps; and the jobs a pilot took but
could not start go back to the queue where they were.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, or_, select, text, update

from farside_protocol import JobState
from farside_protocol.models import DASK_WORKER
from farside_protocol.pilot_api import AcquireRequest

from ..broker.match import queued_fitting
from ..config import SiteConfig
from ..db.engine import insert_rows
from ..db.schema import AnyRow, attempts, jobs
from .fairshare import ShareRules, claimants, plan
from .leases import held_jobs
from .outcomes import LeasePolicy
from .transaction import JobRef, PoolTransaction

S = JobState
#: PostgreSQL advisory lock that serialises acquires while per-user caps are configured
CAPS_LOCK = 0x66617274


@dataclass(frozen=True)
class PilotSlot:
    pilot_id: int
    site: str
    batch_id: str | None


def acquire(
    tx: PoolTransaction,
    slot: PilotSlot,
    site: SiteConfig,
    request: AcquireRequest,
    policy: LeasePolicy,
    rules: ShareRules,
    *,
    skip_locked: bool,
) -> list[AnyRow]:
    """Claim up to ``max_jobs`` queued jobs that each fit the slot, fairly among users.

    Fair share decides how many jobs each user with queued work gets (see ``fairshare``);
    within a user, higher priority and then older jobs go first.
    """
    conn = tx.conn
    if (rules.max_jobs or rules.max_cores) and conn.dialect.name == "postgresql":
        # caps are read-then-claim: concurrent acquires (several pilots, several replicas)
        # would each see the user under the cap. Serialise them; held until commit. SQLite
        # has a single writer already.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CAPS_LOCK})
    rows: list[AnyRow] = []
    carry = 0  # jobs a user was planned but had none fitting: offered to the next
    for user, planned in plan(claimants(conn, rules), rules, request.max_jobs):
        want = planned + carry
        _, cores_left = user.room(rules)
        if cores_left is None:
            got = _claim(
                tx,
                slot,
                site,
                request,
                policy,
                user.owner,
                want,
                request.cores,
                skip_locked,
            )
        else:
            # a core cap: claim one at a time, each within what is left under the cap
            got = []
            while len(got) < want and cores_left > 0:
                one = _claim(
                    tx,
                    slot,
                    site,
                    request,
                    policy,
                    user.owner,
                    1,
                    min(request.cores, cores_left),
                    skip_locked,
                )
                if not one:
                    break
                got += one
                cores_left -= one[0].cores
        rows += got
        carry = want - len(got)
    if not rows:
        return []
    # RETURNING keeps no order; hand them out best first
    rows.sort(key=lambda r: (-r.priority, r.id))
    ahead = _fetched_ahead_that_never_end(rows, request)
    if ahead:
        _unclaim(conn, ahead)
        left = {row.id for row in ahead}
        rows = [row for row in rows if row.id not in left]
        if not rows:
            return []
    insert_rows(
        conn,
        attempts,
        [
            {
                "job_id": row.id,
                "number": row.attempt,
                "pilot_id": slot.pilot_id,
                "site": slot.site,
                "batch_id": slot.batch_id,
                "state": S.ASSIGNED.value,
                "assigned_at": tx.now,
            }
            for row in rows
        ],
    )
    # the claim's UPDATE picked the jobs and moved them: what it moved goes in their history
    tx.moved([JobRef(r.id, r.owner, S.QUEUED, r.attempt) for r in rows], S.ASSIGNED)
    return rows


def _fetched_ahead_that_never_end(rows: list[AnyRow], request: AcquireRequest) -> list[AnyRow]:
    """Dask worker leases among ``rows`` that the pilot could not start now.

    A worker lease runs until its cluster shrinks or ends, so one fetched ahead would wait
    in the pilot for as long, while another pilot could start it. Walking the jobs best
    first, as the pilot starts them, each takes its share of what is free; a worker lease
    that no longer fits is left in the pool.
    """
    if request.free is None:
        return []
    cores, memory, gpus = request.free.cores, request.free.memory, request.free.gpus
    ahead = []
    for row in rows:
        fits_now = row.cores <= cores and row.memory <= memory and row.gpus <= gpus
        if fits_now:
            cores, memory, gpus = cores - row.cores, memory - row.memory, gpus - row.gpus
        elif row.kind == DASK_WORKER:
            ahead.append(row)
    return ahead


#: what puts a claimed job back in the queue as it was: same place, no attempt counted
_UNCLAIMED = {"pilot_id": None, "lease_expires": None, "attempt": jobs.c.attempt - 1}


def _unclaim(conn: Connection, rows: list[AnyRow]) -> None:
    """Undo this transaction's claim of ``rows``: it never happened, so nothing is recorded."""
    conn.execute(
        update(jobs)
        .where(jobs.c.id.in_([row.id for row in rows]))
        .values(state=S.QUEUED.value, **_UNCLAIMED)
    )


def release_unstarted(
    tx: PoolTransaction, pilot_id: int, job_ids: list[int], reason: str
) -> list[int]:
    """Queue again the jobs of ``job_ids`` that the pilot holds and has not started."""
    rows = [
        row
        for row in held_jobs(tx.conn, pilot_id, set(job_ids)).values()
        if row.state == S.ASSIGNED.value
    ]
    if not rows:
        return []
    tx.conn.execute(
        attempts.delete().where(
            or_(*(and_(attempts.c.job_id == r.id, attempts.c.number == r.attempt) for r in rows))
        )
    )
    tx.move(
        # recorded under the attempt the job is back at
        [JobRef(row.id, row.owner, S.ASSIGNED, row.attempt - 1) for row in rows],
        S.QUEUED,
        reason=f"given back unstarted by pilot {pilot_id}: {reason}",
        values=_UNCLAIMED,
    )
    return sorted(row.id for row in rows)


def _claim(
    tx: PoolTransaction,
    slot: PilotSlot,
    site: SiteConfig,
    request: AcquireRequest,
    policy: LeasePolicy,
    owner: str,
    limit: int,
    cores: int,
    skip_locked: bool,
) -> list[AnyRow]:
    """One statement picks and claims a user's best fitting jobs (UPDATE ... WHERE id IN
    (best queued) RETURNING): its text never changes, so the database plans it once."""
    best = (
        select(jobs.c.id)
        .where(
            jobs.c.owner == owner,
            queued_fitting(site, cores, request.memory, request.gpus, request.walltime_left),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(limit)
    )
    if skip_locked:
        best = best.with_for_update(skip_locked=True)
    return list(
        tx.conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(best))
            .values(
                state=S.ASSIGNED.value,
                pilot_id=slot.pilot_id,
                site=slot.site,
                attempt=jobs.c.attempt + 1,
                lease_expires=tx.now + policy.lease_timeout,
            )
            .returning(
                jobs.c.id,
                jobs.c.owner,
                jobs.c.kind,
                jobs.c.priority,
                jobs.c.cores,
                jobs.c.memory,
                jobs.c.walltime,
                jobs.c.gpus,
                jobs.c.attempt,  # the new attempt number
                jobs.c.payload,
                jobs.c.payload_size,
                jobs.c.inputs,
                jobs.c.workflow_id,
            )
        ).all()
    )
