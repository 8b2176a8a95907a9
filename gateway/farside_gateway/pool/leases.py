"""Leases: a pilot heartbeats to keep the jobs it acquired (see ``acquire``) and reports
what became of them.

A job held by a pilot (``assigned`` or ``running``) has a lease that each heartbeat renews.
When the lease expires, or the pilot's batch job is seen gone, ``retries`` ends the attempt
with a *system* error and the job is queued again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update

from farside_protocol import Conflict, ErrorClass, JobState, NotFound
from farside_protocol.pilot_api import LogEntry

from ..db.engine import insert_rows
from ..db.schema import AnyRow, attempts, debug_requests, jobs, log_lines
from .changes import Changes
from .outcomes import (
    ACTIVE,
    HELD_COLUMNS,
    LeasePolicy,
    PreparedUpdate,
    outcome_params,
    store_outcomes,
)
from .retries import fail_attempts
from .submit import release_children

S = JobState


def request_debug(conn: Connection, job_id: int, owner: str | None, changes: Changes) -> int:
    """Ask the pilot running ``job_id`` for a stack dump of it; returns that pilot's id.
    Raises Conflict when the job is not running (nothing to dump)."""
    query = select(jobs.c.state, jobs.c.pilot_id).where(jobs.c.id == job_id)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no job {job_id} of yours")
    if row.state != S.RUNNING.value or row.pilot_id is None:
        raise Conflict(f"job {job_id} is {row.state}: only a running job has a stack to dump")
    conn.execute(debug_requests.delete().where(debug_requests.c.job_id == job_id))
    insert_rows(
        conn,
        debug_requests,
        [{"job_id": job_id, "pilot_id": row.pilot_id, "requested_at": changes.now}],
    )
    changes.pilots.add(row.pilot_id)  # wakes the pilot's held heartbeat: no waiting 5 s
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
    conn: Connection,
    pilot_id: int,
    job_ids: list[int],
    reason: str,
    policy: LeasePolicy,
    changes: Changes,
) -> None:
    """Jobs a pilot was just given that the gateway could not hand over (it could not
    prepare their payload): their attempts end as system errors, retried like any other."""
    rows = list(held_jobs(conn, pilot_id, set(job_ids)).values())
    if rows:
        fail_attempts(conn, rows, ErrorClass.SYSTEM, reason, policy, changes)
    changes.flush(conn)


def report(
    conn: Connection,
    pilot_id: int,
    updates: list[PreparedUpdate],
    logs: list[LogEntry],
    policy: LeasePolicy,
    changes: Changes,
) -> int:
    """Apply a pilot's batch atomically: all of it, or 409 naming the jobs it does not hold."""
    wanted = {p.update.job_id for p in updates} | {entry.job_id for entry in logs}
    held = held_jobs(conn, pilot_id, wanted)
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
            conn,
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
        changes.log_jobs.update(e.job_id for e in logs)
    state = {job_id: row.state for job_id, row in held.items()}
    started: dict[int, dict[str, Any]] = {}
    finished: list[dict[str, Any]] = []
    failures: list[tuple[AnyRow, PreparedUpdate]] = []
    for prepared in updates:
        upd = prepared.update
        row = held[upd.job_id]
        if upd.state == "running":  # JobUpdate.state: a Literal of the wire
            if state[upd.job_id] == S.RUNNING.value:
                # a batch sent again whose first delivery was applied but not answered (the
                # gateway died between commit and reply): reports must be safe to repeat
                continue
            changes.transition(upd.job_id, row.owner, state[upd.job_id], S.RUNNING, upd.attempt)
            state[upd.job_id] = S.RUNNING.value
            started[upd.job_id] = {"_id": upd.job_id, "_n": upd.attempt, "_t": upd.time}
        elif upd.state == "finished":
            changes.transition(upd.job_id, row.owner, state[upd.job_id], S.FINISHED, upd.attempt)
            state[upd.job_id] = S.FINISHED.value
            params = outcome_params(prepared)
            # started and ended within one report (most short jobs): one UPDATE, not two
            start = started.pop(upd.job_id, None)
            params["_start"] = start["_t"] if start else None
            finished.append(params)
        else:
            failures.append((row, prepared))
    if started:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("_id"))
            .values(state=S.RUNNING.value, started_at=bindparam("_t")),
            list(started.values()),
        )
        conn.execute(
            update(attempts)
            .where(
                and_(attempts.c.job_id == bindparam("_id"), attempts.c.number == bindparam("_n"))
            )
            .values(state=S.RUNNING.value, started_at=bindparam("_t")),
            list(started.values()),
        )
    if finished:
        store_outcomes(conn, finished, S.FINISHED, changes.now)
        release_children(conn, [p["_id"] for p in finished], changes)
    for row, prepared in failures:
        upd = prepared.update
        error_class = ErrorClass(upd.error_class or ErrorClass.USER)
        fail_attempts(
            conn,
            [row],
            error_class,
            upd.error or "the job failed",
            policy,
            changes,
            outcome=outcome_params(prepared),
            resource=upd.resource,
        )
    changes.flush(conn)
    return len(updates)
