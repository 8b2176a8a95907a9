"""Leases: a pilot acquires jobs, heartbeats to keep them, and reports what became of them.

A job held by a pilot (``assigned`` or ``running``) has a lease that each heartbeat renews.
When the lease expires, or the pilot's batch job is seen gone, the attempt fails with a
*system* error and the job is queued again; system errors count against
``max_system_attempts``, never against the user's ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from farside_pilot.protocol import Conflict, ErrorClass, JobState
from farside_pilot.protocol.models import (
    ACTIVE_STATES,
    MAX_WALLTIME,
    AcquireRequest,
    JobUpdate,
    LogEntry,
)

from ..auth.tokens import revoke_pilot_tokens
from ..db.engine import insert_rows
from ..db.schema import AnyRow, attempts, jobs, log_lines, pilots
from .changes import Changes
from .submit import fail_children, release_children

S = JobState
_ACTIVE = [s.value for s in ACTIVE_STATES]


@dataclass(frozen=True)
class LeasePolicy:
    lease_timeout: float
    max_system_attempts: int


@dataclass(frozen=True)
class PilotSlot:
    pilot_id: int
    site: str
    batch_id: str | None


@dataclass(frozen=True)
class PreparedUpdate:
    """A pilot's update with its result already placed (inline bytes or a blob key)."""

    update: JobUpdate
    result: bytes | None = None
    result_blob: str | None = None
    result_size: int | None = None


_HELD_COLUMNS = (
    jobs.c.id,
    jobs.c.owner,
    jobs.c.state,
    jobs.c.attempt,
    jobs.c.pilot_id,
    jobs.c.max_attempts,
    jobs.c.user_failures,
    jobs.c.system_failures,
)


def acquire(
    conn: Connection,
    slot: PilotSlot,
    request: AcquireRequest,
    policy: LeasePolicy,
    changes: Changes,
    *,
    skip_locked: bool,
) -> list[AnyRow]:
    """Claim up to ``max_jobs`` queued jobs that each fit the slot; best first.

    One statement picks and claims (UPDATE ... WHERE id IN (best queued) RETURNING): its
    text never changes, so the database plans it once, and no row is read twice.
    """
    best = (
        select(jobs.c.id)
        .where(
            jobs.c.state == S.QUEUED.value,
            jobs.c.cores <= request.cores,
            jobs.c.memory <= request.memory,
            jobs.c.gpus <= request.gpus,
            jobs.c.walltime <= (request.walltime_left or MAX_WALLTIME),
            or_(jobs.c.sites.is_(None), jobs.c.sites.like(f"%,{slot.site},%")),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.id)
        .limit(request.max_jobs)
    )
    if skip_locked:
        best = best.with_for_update(skip_locked=True)
    claimed = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(best))
        .values(
            state=S.ASSIGNED.value,
            pilot_id=slot.pilot_id,
            site=slot.site,
            attempt=jobs.c.attempt + 1,
            lease_expires=changes.now + policy.lease_timeout,
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
        )
    ).all()
    # RETURNING keeps no order; hand them out best first
    rows = sorted(claimed, key=lambda r: (-r.priority, r.id))
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
                "assigned_at": changes.now,
            }
            for row in rows
        ],
    )
    for row in rows:
        changes.transition(row.id, row.owner, S.QUEUED, S.ASSIGNED, row.attempt)
    changes.flush(conn)
    return rows


def heartbeat(
    conn: Connection, pilot_id: int, held: list[int], policy: LeasePolicy, now: float
) -> list[int]:
    """Renew the pilot's leases; return the held jobs it must drop (cancelled, taken away)."""
    conn.execute(update(pilots).where(pilots.c.id == pilot_id).values(last_seen=now))
    conn.execute(
        update(jobs)
        .where(jobs.c.pilot_id == pilot_id, jobs.c.state.in_(_ACTIVE))
        .values(lease_expires=now + policy.lease_timeout)
    )
    if not held:
        return []
    # a job this pilot finished is settled, not taken away: it need not be dropped
    still = {
        row.id
        for row in conn.execute(
            select(jobs.c.id).where(
                jobs.c.id.in_(held),
                jobs.c.pilot_id == pilot_id,
                jobs.c.state.in_([*_ACTIVE, S.FINISHED.value]),
            )
        )
    }
    return sorted(set(held) - still)


def held_jobs(conn: Connection, pilot_id: int, job_ids: set[int]) -> dict[int, AnyRow]:
    """Those of ``job_ids`` the pilot holds (assigned to it, not ended)."""
    # by pilot, not by an IN list of ids: the statement text stays the same, so it is
    # planned once, and a pilot holds few jobs (its slot plus prefetch)
    rows = conn.execute(
        select(*_HELD_COLUMNS).where(jobs.c.pilot_id == pilot_id, jobs.c.state.in_(_ACTIVE))
    ).all()
    return {row.id: row for row in rows if row.id in job_ids}


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
    stale = {
        p.update.job_id
        for p in updates
        if p.update.job_id in held and held[p.update.job_id].attempt != p.update.attempt
    }
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
        if upd.state == "running":
            changes.transition(upd.job_id, row.owner, state[upd.job_id], S.RUNNING, upd.attempt)
            state[upd.job_id] = S.RUNNING.value
            started[upd.job_id] = {"_id": upd.job_id, "_n": upd.attempt, "_t": upd.time}
        elif upd.state == "finished":
            changes.transition(upd.job_id, row.owner, state[upd.job_id], S.FINISHED, upd.attempt)
            state[upd.job_id] = S.FINISHED.value
            params = _outcome_params(prepared)
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
        _store_outcomes(conn, finished, S.FINISHED, changes.now)
        release_children(conn, [p["_id"] for p in finished], changes)
    for row, prepared in failures:
        upd = prepared.update
        error_class = ErrorClass(upd.error_class or ErrorClass.USER)
        fail_attempts(
            conn, [row], error_class, upd.error or "the job failed", policy, changes,
            outcome=_outcome_params(prepared),
        )  # fmt: skip
    changes.flush(conn)
    return len(updates)


def _outcome_params(prepared: PreparedUpdate) -> dict[str, Any]:
    upd = prepared.update
    return {
        "_id": upd.job_id,
        "_n": upd.attempt,
        "_t": upd.time,
        "_exit": upd.exit_code,
        "_wall": upd.wall_time,
        "_cpu": upd.cpu_time,
        "_rss": upd.max_rss,
        "_result": prepared.result,
        "_blob": prepared.result_blob,
        "_size": prepared.result_size,
        "_class": upd.error_class.value if upd.error_class else None,
        "_error": upd.error,
        "_start": None,
    }


def _store_outcomes(
    conn: Connection, params: list[dict[str, Any]], final: JobState, now: float
) -> None:
    measured: dict[str, Any] = {
        "exit_code": bindparam("_exit"),
        "wall_time": bindparam("_wall"),
        "cpu_time": bindparam("_cpu"),
        "max_rss": bindparam("_rss"),
        "error_class": bindparam("_class"),
        "error": bindparam("_error"),
    }
    started = {"started_at": func.coalesce(jobs.c.started_at, bindparam("_start"))}
    conn.execute(
        update(jobs)
        .where(jobs.c.id == bindparam("_id"))
        .values(
            state=final.value,
            ended_at=now,
            lease_expires=None,
            result=bindparam("_result"),
            result_blob=bindparam("_blob"),
            result_size=bindparam("_size"),
            **started,
            **measured,
        ),
        params,
    )
    conn.execute(
        update(attempts)
        .where(and_(attempts.c.job_id == bindparam("_id"), attempts.c.number == bindparam("_n")))
        .values(
            state=final.value,
            ended_at=now,
            started_at=func.coalesce(attempts.c.started_at, bindparam("_start")),
            **measured,
        ),
        params,
    )


def fail_attempts(
    conn: Connection,
    rows: list[AnyRow],
    error_class: ErrorClass,
    reason: str,
    policy: LeasePolicy,
    changes: Changes,
    *,
    outcome: dict[str, Any] | None = None,
) -> None:
    """End the current attempt of each held job; retry it or fail it, by error class."""
    dead: list[int] = []
    for row in rows:
        user_failures, system_failures = row.user_failures, row.system_failures
        if error_class is ErrorClass.USER:
            user_failures += 1
            retry = user_failures < row.max_attempts
        else:
            system_failures += 1
            retry = system_failures < policy.max_system_attempts
        params = outcome or {
            "_id": row.id, "_n": row.attempt, "_t": changes.now, "_exit": None, "_wall": None,
            "_cpu": None, "_rss": None, "_result": None, "_blob": None, "_size": None,
            "_start": None,
        }  # fmt: skip
        params = {**params, "_class": error_class.value, "_error": reason}
        counters = {"user_failures": user_failures, "system_failures": system_failures}
        if retry:
            conn.execute(
                update(attempts)
                .where(attempts.c.job_id == row.id, attempts.c.number == row.attempt)
                .values(
                    state=S.FAILED.value,
                    ended_at=changes.now,
                    error_class=error_class.value,
                    error=reason,
                    exit_code=params["_exit"],
                    wall_time=params["_wall"],
                    cpu_time=params["_cpu"],
                    max_rss=params["_rss"],
                )
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == row.id)
                .values(
                    state=S.QUEUED.value,
                    pilot_id=None,
                    lease_expires=None,
                    queued_at=changes.now,
                    error_class=error_class.value,
                    error=reason,
                    **counters,
                )
            )
            changes.transition(
                row.id, row.owner, row.state, S.QUEUED, row.attempt,
                error_class=error_class.value,
                reason=f"attempt {row.attempt} failed ({error_class.value}): {reason}; retrying",
            )  # fmt: skip
        else:
            conn.execute(update(jobs).where(jobs.c.id == row.id).values(**counters))
            _store_outcomes(conn, [params], S.FAILED, changes.now)
            changes.transition(
                row.id, row.owner, row.state, S.FAILED, row.attempt,
                error_class=error_class.value, reason=reason,
            )  # fmt: skip
            dead.append(row.id)
    fail_children(conn, dead, changes)


def release_pilot(
    conn: Connection,
    pilot_id: int,
    final_state: str,
    reason: str,
    policy: LeasePolicy,
    changes: Changes,
) -> None:
    """A pilot is gone (exited, lost, its batch job ended): retry everything it held."""
    conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id, pilots.c.state.in_(["submitted", "running", "retiring"]))
        .values(state=final_state, ended_at=changes.now, reason=reason)
    )
    revoke_pilot_tokens(conn, pilot_id)
    rows = list(
        conn.execute(
            select(*_HELD_COLUMNS).where(jobs.c.pilot_id == pilot_id, jobs.c.state.in_(_ACTIVE))
        ).all()
    )
    if rows:
        fail_attempts(conn, rows, ErrorClass.SYSTEM, reason, policy, changes)
    changes.flush(conn)


def reap(conn: Connection, policy: LeasePolicy, heartbeat_timeout: float, changes: Changes) -> int:
    """Fail expired leases and pilots that went silent; return how many jobs were affected."""
    silent = conn.execute(
        select(pilots.c.id).where(
            pilots.c.state.in_(["running", "retiring"]),
            pilots.c.last_seen < changes.now - heartbeat_timeout,
        )
    ).all()
    for pilot in silent:
        release_pilot(
            conn, pilot.id, "lost",
            f"pilot {pilot.id} lost: no heartbeat for {heartbeat_timeout:.0f}s",
            policy, changes,
        )  # fmt: skip
    expired = list(
        conn.execute(
            select(*_HELD_COLUMNS).where(
                jobs.c.state.in_(_ACTIVE), jobs.c.lease_expires < changes.now
            )
        ).all()
    )
    for row in expired:
        fail_attempts(
            conn, [row], ErrorClass.SYSTEM,
            f"lease on pilot {row.pilot_id} expired: no heartbeat for "
            f"{policy.lease_timeout:.0f}s",
            policy, changes,
        )  # fmt: skip
    changes.flush(conn)
    return len(expired) + len(silent)


def grant_grace(conn: Connection, now: float, timeout: float) -> None:
    """After a gateway restart: live pilots and their leases get a full timeout from now."""
    conn.execute(
        update(pilots).where(pilots.c.state.in_(["running", "retiring"])).values(last_seen=now)
    )
    conn.execute(update(jobs).where(jobs.c.state.in_(_ACTIVE)).values(lease_expires=now + timeout))
