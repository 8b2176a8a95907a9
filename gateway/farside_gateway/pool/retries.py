"""Ending attempts that did not finish: retry or fail by error class, lost pilots, the reaper.

System errors (a lost pilot, an expired lease, a batch job that vanished) count against the
gateway's ``max_system_attempts``, never against the user's ``max_attempts``; user errors
(the function raised) are retried only while ``max_attempts`` allows. Resource errors (out
of memory, walltime exceeded) are retried with more of that resource, up to what the
largest site that could run the job offers and ``max_resource_attempts`` times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select, update

from farside_protocol import ErrorClass, JobState, format_memory, format_walltime
from farside_protocol.models import MAX_WALLTIME
from farside_protocol.states import PilotState

from ..auth.tokens import revoke_pilot_tokens
from ..broker.match import Need, fits
from ..db.schema import AnyRow, attempts, jobs, pilots
from .outcomes import ACTIVE, HELD_COLUMNS, Ending, LeasePolicy, Outcome, store_outcomes
from .pilots import LIVE_PILOT_STATES
from .submit import fail_children
from .transaction import JobRef, PoolTransaction

S = JobState


def fail_attempts(
    tx: PoolTransaction,
    rows: list[AnyRow],
    error_class: ErrorClass,
    reason: str,
    policy: LeasePolicy,
    *,
    outcome: Outcome | None = None,
    resource: str | None = None,
) -> None:
    """End the current attempt of each held job (rows of ``HELD_COLUMNS``); retry it or
    fail it, by error class. ``outcome``: what the pilot reported, if it did."""
    dead: list[int] = []
    for row in rows:
        user_failures, system_failures = row.user_failures, row.system_failures
        resource_failures = row.resource_failures
        more: dict[str, Any] = {}
        if error_class is ErrorClass.USER:
            user_failures += 1
            retry = user_failures < row.max_attempts
        elif error_class is ErrorClass.RESOURCE and resource in ("memory", "walltime"):
            resource_failures += 1
            measured = None
            if outcome is not None:
                measured = outcome.max_rss if resource == "memory" else outcome.wall_time
            more, why_not = _more_of(row, resource, measured, policy)
            retry = bool(more) and resource_failures < policy.max_resource_attempts
            if not retry:
                reason += f"; {why_not or 'no more retries with more ' + resource}"
        else:
            system_failures += 1
            retry = system_failures < policy.max_system_attempts
        ended = replace(outcome or Outcome(), error_class=error_class, error=reason)
        counters = {
            "user_failures": user_failures,
            "system_failures": system_failures,
            "resource_failures": resource_failures,
        }
        job = JobRef.of(row)
        if retry:
            tx.conn.execute(
                update(attempts)
                .where(attempts.c.job_id == row.id, attempts.c.number == row.attempt)
                .values(state=S.FAILED.value, ended_at=tx.now, **ended.attempt_columns())
            )
            retrying = "retrying"
            if more:
                retrying += " with " + str(more["adjusted"]).rsplit("; ", 1)[-1]
            tx.move(
                [job],
                S.QUEUED,
                error_class=error_class,
                reason=f"attempt {row.attempt} failed ({error_class.value}): {reason}; {retrying}",
                values={
                    "pilot_id": None,
                    "lease_expires": None,
                    "queued_at": tx.now,
                    "error_class": error_class.value,
                    "error": reason,
                    **counters,
                    **more,
                },
            )
        else:
            store_outcomes(tx, [Ending(job, ended, columns=counters)], S.FAILED)
            dead.append(row.id)
    fail_children(tx, dead)


def _more_of(
    row: Any, resource: str, measured: float | None, policy: LeasePolicy
) -> tuple[dict[str, Any], str | None]:
    """Columns for a retry with more ``resource`` (twice as much, or 1.5 times what was
    measured, whichever is more, capped by the largest site that could run the job);
    empty with the reason when no site offers more."""
    need = Need.of_row(row)
    current = int(row.memory if resource == "memory" else row.walltime)
    # sites that could run the job if this resource did not matter
    relaxed = replace(need, memory=0) if resource == "memory" else replace(need, walltime=0)
    candidates = [s for s in policy.sites if fits(s, relaxed)]
    show: Callable[[int], str]
    if resource == "memory":
        limit = max((s.memory for s in candidates), default=current)
        show = format_memory
    else:
        limit = max((s.walltime or MAX_WALLTIME for s in candidates), default=current)
        show = format_walltime
    wanted = max(current * 2, math.ceil((measured or 0) * 1.5))
    new = min(limit, wanted)
    if new <= current:
        return {}, f"no site offers more than {show(limit)} of {resource}"
    note = f"{resource} {show(current)} → {show(new)}"
    adjusted = f"{row.adjusted}; {note}" if row.adjusted else note
    return {resource: new, "adjusted": adjusted}, None


def release_pilot(
    tx: PoolTransaction,
    pilot_id: int,
    final_state: str,
    reason: str,
    policy: LeasePolicy,
    *,
    error_class: ErrorClass = ErrorClass.SYSTEM,
    resource: str | None = None,
) -> None:
    """A pilot is gone (exited, lost, its batch job ended): retry everything it held.

    ``error_class``/``resource``: what the batch system said, e.g. that it killed the
    pilot's batch job for using too much memory.
    """
    tx.conn.execute(
        update(pilots)
        .where(pilots.c.id == pilot_id, pilots.c.state.in_(LIVE_PILOT_STATES))
        .values(state=final_state, ended_at=tx.now, reason=reason)
    )
    revoke_pilot_tokens(tx.conn, pilot_id)
    _fail_held(tx, pilot_id, error_class, reason, policy, resource)


def take_back(tx: PoolTransaction, pilot_id: int, reason: str, policy: LeasePolicy) -> None:
    """Stop a live pilot's work at once (its site went offline): it is marked retiring,
    and whatever it held is retried elsewhere as a system error; its next heartbeat tells
    it to drop those jobs."""
    tx.conn.execute(
        update(pilots)
        .where(
            pilots.c.id == pilot_id, pilots.c.state.in_([PilotState.SUBMITTED, PilotState.RUNNING])
        )
        .values(state=PilotState.RETIRING, reason=reason)
    )
    if _fail_held(tx, pilot_id, ErrorClass.SYSTEM, reason, policy):
        tx.tell_pilots([pilot_id])  # its heartbeat answers at once: drop them


def _fail_held(
    tx: PoolTransaction,
    pilot_id: int,
    error_class: ErrorClass,
    reason: str,
    policy: LeasePolicy,
    resource: str | None = None,
) -> bool:
    """End the current attempt of every job the pilot holds; True if it held any."""
    rows = list(
        tx.conn.execute(
            select(*HELD_COLUMNS).where(jobs.c.pilot_id == pilot_id, jobs.c.state.in_(ACTIVE))
        ).all()
    )
    if rows:
        fail_attempts(tx, rows, error_class, reason, policy, resource=resource)
    return bool(rows)


def reap(tx: PoolTransaction, policy: LeasePolicy, heartbeat_timeout: float) -> int:
    """Fail expired leases and pilots that went silent; return how many jobs were affected."""
    silent = tx.conn.execute(
        select(pilots.c.id).where(
            pilots.c.state.in_([PilotState.RUNNING, PilotState.RETIRING]),
            pilots.c.last_seen < tx.now - heartbeat_timeout,
        )
    ).all()
    for pilot in silent:
        release_pilot(
            tx,
            pilot.id,
            "lost",
            f"pilot {pilot.id} lost: no heartbeat for {heartbeat_timeout:.0f}s",
            policy,
        )
    expired = list(
        tx.conn.execute(
            select(*HELD_COLUMNS).where(jobs.c.state.in_(ACTIVE), jobs.c.lease_expires < tx.now)
        ).all()
    )
    for row in expired:
        fail_attempts(
            tx,
            [row],
            ErrorClass.SYSTEM,
            f"lease on pilot {row.pilot_id} expired: no heartbeat for {policy.lease_timeout:.0f}s",
            policy,
        )
    return len(expired) + len(silent)


def grant_grace(conn: Connection, now: float, timeout: float) -> None:
    """After a gateway restart: live pilots and their leases get a full timeout from now."""
    conn.execute(
        update(pilots)
        .where(pilots.c.state.in_([PilotState.RUNNING, PilotState.RETIRING]))
        .values(last_seen=now)
    )
    conn.execute(update(jobs).where(jobs.c.state.in_(ACTIVE)).values(lease_expires=now + timeout))
