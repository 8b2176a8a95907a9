"""One write transaction on the pool: the unit of work every change to jobs goes through.

A pool operation is a plain function whose first argument is a :class:`PoolTransaction`.
It reads and writes through ``tx.conn`` and changes a job's state only with
:meth:`PoolTransaction.move`, which writes the new state and records the transition (checked
against the state machine, appended to the job's history) in one step. A statement that
has to pick its rows itself — inserting jobs, a claim that chooses and takes jobs in one
``UPDATE … RETURNING`` — says what it moved with :meth:`~PoolTransaction.moved`.

:class:`Pool` runs an operation in one database transaction, writes the history just before
commit, and after commit wakes whoever waits on what changed: pilots long-polling for work,
clients' event streams, log followers, other replicas (:mod:`farside_gateway.notify`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, update

from farside_protocol import ErrorClass, JobState

from ..db import Database
from ..db.schema import AnyRow, jobs
from ..notify import Notifier
from .changes import Changes

T = TypeVar("T")

#: the columns :meth:`JobRef.of` reads
REF_COLUMNS = (jobs.c.id, jobs.c.owner, jobs.c.state, jobs.c.attempt)

#: ids per ``IN (…)`` list: SQLite refuses statements of more than 32,766 parameters, and
#: a large map's scouts release tens of thousands of jobs at once
_IDS_PER_STATEMENT = 10_000


@dataclass(frozen=True)
class JobRef:
    """A job as the transaction read it: enough to move it and to say so in its history."""

    id: int
    owner: str
    state: JobState
    #: the attempt the move is recorded under (the job's attempt once it has moved)
    attempt: int

    @classmethod
    def of(cls, row: AnyRow) -> JobRef:
        """From a row that has at least :data:`REF_COLUMNS`."""
        return cls(int(row.id), str(row.owner), JobState(row.state), int(row.attempt))


class PoolTransaction:
    """A write transaction's connection and clock, and the record of what it changed."""

    def __init__(self, conn: Connection, now: float) -> None:
        self.conn = conn
        #: the transaction's time: every timestamp it writes is this one
        self.now = now
        self.changes = Changes(now)

    def move(
        self,
        refs: Sequence[JobRef],
        to: JobState,
        *,
        error_class: ErrorClass | None = None,
        reason: str | None = None,
        values: Mapping[str, Any] | None = None,
        each: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Move the jobs to state ``to`` and record each move in its history.

        ``values``: columns set alike on every job (plain values or SQL expressions);
        ``each``: one mapping per job, in the order of ``refs`` and with the same keys in
        each, of columns that differ from job to job. ``error_class`` and ``reason`` are
        what the history says; a job's own ``error`` columns change only through
        ``values`` or ``each``. A move the state machine forbids raises
        :class:`~farside_gateway.pool.changes.IllegalTransition` before anything is written.
        """
        if not refs:
            return
        self.moved(refs, to, error_class=error_class, reason=reason)
        common = {"state": to.value, **(values or {})}
        if each is None:
            ids = [ref.id for ref in refs]
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = ids[start : start + _IDS_PER_STATEMENT]
                self.conn.execute(update(jobs).where(jobs.c.id.in_(chunk)).values(**common))
            return
        keys = list(each[0]) if each else []
        # one statement for all jobs, its parameters bound per job (an executemany)
        statement = (
            update(jobs)
            .where(jobs.c.id == bindparam("_id"))
            .values(**common, **{key: bindparam(f"_{key}") for key in keys})
        )
        params = [
            {"_id": ref.id, **{f"_{key}": own[key] for key in keys}}
            for ref, own in zip(refs, each, strict=True)
        ]
        self.conn.execute(statement, params)

    def moved(
        self,
        refs: Iterable[JobRef],
        to: JobState,
        *,
        error_class: ErrorClass | None = None,
        reason: str | None = None,
    ) -> None:
        """Record moves that a statement of this transaction made itself."""
        for ref in refs:
            self.changes.transition(
                ref.id,
                ref.owner,
                ref.state,
                to,
                ref.attempt,
                error_class=error_class.value if error_class else None,
                reason=reason,
            )

    def created(
        self,
        job_id: int,
        owner: str,
        state: JobState,
        *,
        error_class: ErrorClass | None = None,
        reason: str | None = None,
    ) -> None:
        """Record a job this transaction inserted, in its first state."""
        self.changes.transition(
            job_id,
            owner,
            None,
            state,
            0,
            error_class=error_class.value if error_class else None,
            reason=reason,
        )

    def tell_pilots(self, pilot_ids: Iterable[int]) -> None:
        """Wake these pilots' held heartbeats: something they hold changed (a job to drop,
        a stack dump asked for)."""
        self.changes.pilots.update(pilot_ids)

    def logs_written(self, job_ids: Iterable[int]) -> None:
        """Wake those following these jobs' logs."""
        self.changes.log_jobs.update(job_ids)

    def tell_owner(self, owner: str) -> None:
        """Wake the owner's watchers (event streams, widgets) without a job moving."""
        self.changes.owners.add(owner)

    def write_history(self) -> None:
        """Append the recorded moves to ``events``; :class:`Pool` calls it before commit."""
        self.changes.flush(self.conn)


class Pool:
    """Runs pool operations, each in one write transaction, and publishes what they changed.

    >>> ids = await pool.write(lambda tx: cancel_jobs(tx, "alice", [7], None))  # doctest: +SKIP
    """

    def __init__(self, db: Database, notifier: Notifier, now: Callable[[], float]) -> None:
        self.db = db
        self.notifier = notifier
        self.now = now

    async def write(self, operation: Callable[[PoolTransaction], T]) -> T:
        transaction: list[PoolTransaction] = []

        def run(conn: Connection) -> T:
            tx = PoolTransaction(conn, self.now())
            transaction.append(tx)
            result = operation(tx)
            tx.write_history()
            return result

        result = await self.db.write(run)
        self.notifier.publish(transaction[0].changes)
        return result
