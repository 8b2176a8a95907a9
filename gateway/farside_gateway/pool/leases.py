"""Leases: a pilot heartbeats to keep the jobs it acquired (see ``acquire``) and reports
what became of them.

A job held by a pilot (``assigned`` or ``running``) has a lease that each heartbeat renews.
When the lease expires, or the pilot's batch job is seen gone, ``retries`` ends the attempt
with a *system* error and the job is queued again.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection, and_, bindparam, select, update

from farside_protocol import Conflict, ErrorClass, JobState, NotFound
from farside_protocol.pilot_api import LogEntry

from ..db.engine import insert_rows
from ..db.schema import AnyRow, attempts, debug_requests, jobs, log_lines
from .outcomes import (
    ACTIVE,
    HELD_COLUMNS,
    Ending,
    LeasePolicy,
    Outcome,
    PreparedUpdate,
    store_outcomes,
)
from .retries import fail_attempts
from .submit import release_children
from .transaction import JobRef, PoolTransaction

S = JobState


def request_debug(tx: PoolTransaction, job_id: int, owner: str | None) -> int:
    """Ask the pilot running ``job_id`` for a stack dump of it; returns that pilot's id.
    Raises Conflict when the job is not running (nothing to dump)."""
    query = select(jobs.c.state, jobs.c.pilot_id).where(jobs.c.id == job_id)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    row = tx.conn.execute(query).first()
    if row is None:
        raise NotFound(f"no job {job_id} of yours")
    if row.state != S.RUNNING.value or row.pilot_id is None:
        raise Conflict(f"job {job_id} is {row.state}: only a running job has a stack to dump")
    tx.conn.execute(debug_requests.delete().where(debug_requests.c.job_id == job_id))
    insert_rows(
        tx.conn,
        debug_requests,
        [{"job_id": job_id, "pilot_id": row.pilot_id, "requested_at": tx.now}],
    )
    tx.tell_pilots([row.pilot_id])  # wakes the pilot's held heartbeat: no waiting 5 s
    return int(row.pilot_id)


def held_jobs(conn: Connection, pilot_id: int, job_ids: set[int]) -> dict[int, AnyRow]:
    """Those of ``job_ids`` the pilot holds (assigned to it, not ended)."""
    # by pilot, not by an IN list of ids: the statement text stays the same, so it is
    # planned once, and a pilot holds few jobs (its slot plus prefetch)
    rows = conn.execute(
        select(*HELD_COLUMNS).where(jobs.c.pilot_id == pilot_id, jobs.c.state.in_(ACTIVE))
    ).all()
    return {row.id: row for row in rows if row.id in job_ids}


def give_back(
    tx: PoolTransaction, pilot_id: int, job_ids: list[int], reason: str, policy: LeasePolicy
) -> None:
    """Jobs a pilot was just given that the gateway could not hand over (it could not
    prepare their payload): their attempts end as system errors, retried like any other."""
    rows = list(held_jobs(tx.conn, pilot_id, set(job_ids)).values())
    if rows:
        fail_attempts(tx, rows, ErrorClass.SYSTEM, reason, policy)


def report(
    tx: PoolTransaction,
    pilot_id: int,
    updates: list[PreparedUpdate],
    logs: list[LogEntry],
    policy: LeasePolicy,
) -> int:
    """Apply a pilot's batch atomically: all of it, or 409 naming the jobs it does not hold."""
    wanted = {p.update.job_id for p in updates} | {entry.job_id for entry in logs}
    held = held_jobs(tx.conn, pilot_id, wanted)
    # an update or log line of an earlier attempt (the job was retried meanwhile) is stale
    stale = {
        p.update.job_id
        for p in updates
        if p.update.job_id in held and held[p.update.job_id].attempt != p.update.attempt
    } | {e.job_id for e in logs if e.job_id in held and held[e.job_id].attempt != e.attempt}
    bad = sorted((wanted - held.keys()) | stale)
    if bad:
        raise Conflict(
            f"pilot {pilot_id} does not hold job(s) {bad[:20]} (cancelled, retried elsewhere "
            "or never assigned); drop them",
            {"job_ids": bad},
        )
    if logs:
        insert_rows(
            tx.conn,
            log_lines,
            [
                {
                    "job_id": e.job_id,
                    "attempt": e.attempt,
                    "stream": e.stream,
                    "time": e.time,
                    "text": e.text,
                }
                for e in logs
            ],
        )
        tx.logs_written(e.job_id for e in logs)
    before = {job_id: JobRef.of(row) for job_id, row in held.items()}
    state = {job_id: ref.state for job_id, ref in before.items()}
    started: dict[int, float] = {}
    finished: list[Ending] = []
    failures: list[tuple[AnyRow, PreparedUpdate]] = []
    for prepared in updates:
        upd = prepared.update
        job_id = upd.job_id
        if upd.state == "running":  # JobUpdate.state: a Literal of the wire
            if state[job_id] is S.RUNNING:
                # a batch sent again whose first delivery was applied but not answered (the
                # gateway died between commit and reply): reports must be safe to repeat
                continue
            started[job_id] = upd.time
            state[job_id] = S.RUNNING
        elif upd.state == "finished":
            start = started.pop(job_id, None)
            if start is not None:
                # started and ended within one report (most short jobs): the job is written
                # once, when its outcome is stored
                tx.moved([before[job_id]], S.RUNNING)
            job = replace(before[job_id], state=state[job_id])
            finished.append(Ending(job, Outcome.reported(prepared), started_at=start))
            state[job_id] = S.FINISHED
        else:
            failures.append((held[job_id], prepared))
    if started:
        refs = [before[job_id] for job_id in started]
        tx.move(refs, S.RUNNING, each=[{"started_at": t} for t in started.values()])
        tx.conn.execute(
            update(attempts)
            .where(
                and_(attempts.c.job_id == bindparam("_id"), attempts.c.number == bindparam("_n"))
            )
            .values(state=S.RUNNING.value, started_at=bindparam("_t")),
            [
                {"_id": ref.id, "_n": ref.attempt, "_t": time}
                for ref, time in zip(refs, started.values(), strict=True)
            ],
        )
    if finished:
        store_outcomes(tx, finished, S.FINISHED)
        release_children(tx, [ending.job.id for ending in finished])
    for row, prepared in failures:
        upd = prepared.update
        error_class = ErrorClass(upd.error_class or ErrorClass.USER)
        fail_attempts(
            tx,
            [row],
            error_class,
            upd.error or "the job failed",
            policy,
            outcome=Outcome.reported(prepared),
            resource=upd.resource,
        )
    return len(updates)
