"""The job state machine and the record of what a transaction changed.

Every state change goes through :meth:`Changes.transition`, which checks it against
:data:`TRANSITIONS` and appends a row to ``events`` (the state history and the clients'
event stream). After the transaction commits, the gateway wakes whoever waits on what
changed: pilots long-polling for work, clients' event streams, log followers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from farside_protocol import JobState

from ..db.engine import insert_rows
from ..db.schema import events

S = JobState

#: PostgreSQL advisory lock that orders event ids by commit (any constant, unique here).
EVENTS_LOCK = 0x66617273

#: Allowed moves. Final states are final: nothing leaves them.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.PENDING: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.ASSIGNED, S.FAILED, S.CANCELLED}),
    # assigned/running -> queued: the attempt failed and the job is retried
    S.ASSIGNED: frozenset({S.RUNNING, S.QUEUED, S.FINISHED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.QUEUED, S.FINISHED, S.FAILED, S.CANCELLED}),
    S.FINISHED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: code tried a move the state machine forbids."""


def check_transition(old: str, new: str) -> None:
    if JobState(new) not in TRANSITIONS[JobState(old)]:
        raise IllegalTransition(f"job state {old} -> {new} is not allowed")


@dataclass
class Changes:
    """Collects event rows and wake-ups during one transaction."""

    now: float
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)
    queued: bool = False
    log_jobs: set[int] = field(default_factory=set)
    ended_jobs: set[int] = field(default_factory=set)
    pilots: set[int] = field(default_factory=set)

    def transition(
        self,
        job_id: int,
        owner: str,
        old: str | None,
        new: JobState,
        attempt: int,
        *,
        error_class: str | None = None,
        reason: str | None = None,
    ) -> None:
        if old is not None:
            check_transition(old, new)
        self.event_rows.append(
            {
                "job_id": job_id,
                "owner": owner,
                "state": new.value,
                "time": self.now,
                "attempt": attempt,
                "error_class": error_class,
                "reason": reason,
            }
        )
        self.owners.add(owner)
        if new is JobState.QUEUED:
            self.queued = True
        if new.terminal:
            self.ended_jobs.add(job_id)

    def flush(self, conn: Connection) -> None:
        if self.event_rows:
            if conn.dialect.name == "postgresql":
                # Event ids are the stream's cursor, so they must become visible in id order.
                # A sequence hands out ids at insert, not at commit: without this lock a
                # transaction could commit ids below ones a reader has already passed, and
                # those events would never be streamed. Held until commit; serialises only
                # the tail of event-writing transactions, across every gateway replica.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENTS_LOCK})
            insert_rows(conn, events, self.event_rows)
            self.event_rows = []
