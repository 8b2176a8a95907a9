"""A pool transaction writes a job's new state and its history row together, refuses a
move the state machine forbids before writing anything, and wakes waiters only after
commit (a real SQLite pool, migrated)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select

from farside_gateway.db import Database
from farside_gateway.db.schema import events, jobs
from farside_gateway.notify import Notifier
from farside_gateway.pool.changes import IllegalTransition
from farside_gateway.pool.transaction import REF_COLUMNS, JobRef, Pool, PoolTransaction
from farside_protocol import ErrorClass, JobState

NOW = 1000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    database.migrate()

    def fill(conn: Connection) -> None:
        job = dict(owner="alice", kind="function", cores=1, memory=1, walltime=60, gpus=0)
        job.update(max_attempts=3, payload_size=0, created_at=0.0, attempt=1)
        conn.execute(
            insert(jobs),
            [
                {**job, "id": 1, "state": "queued"},
                {**job, "id": 2, "state": "queued"},
                {**job, "id": 3, "state": "finished"},
            ],
        )

    database.run_sync(fill)
    yield database
    database.close()


def refs(conn: Connection, *ids: int) -> list[JobRef]:
    rows = conn.execute(select(*REF_COLUMNS).where(jobs.c.id.in_(ids)).order_by(jobs.c.id))
    return [JobRef.of(row) for row in rows]


def states(db: Database) -> dict[int, str]:
    rows = db.run_sync(lambda conn: conn.execute(select(jobs.c.id, jobs.c.state)).all())
    return {row.id: row.state for row in rows}


def history(db: Database) -> list[tuple[int, str, str | None]]:
    rows = db.run_sync(
        lambda conn: conn.execute(
            select(events.c.job_id, events.c.state, events.c.reason).order_by(events.c.id)
        ).all()
    )
    return [(row.job_id, row.state, row.reason) for row in rows]


async def test_a_move_writes_the_state_and_the_history_together(db: Database) -> None:
    notifier = Notifier()
    woken = notifier.events.waiter("alice")
    pool = Pool(db, notifier, lambda: NOW)

    def cancel(tx: PoolTransaction) -> None:
        tx.move(
            refs(tx.conn, 1, 2),
            JobState.CANCELLED,
            error_class=ErrorClass.CANCELLED,
            reason="not needed",
            values={"ended_at": tx.now},
        )

    await pool.write(cancel)
    assert states(db) == {1: "cancelled", 2: "cancelled", 3: "finished"}
    assert history(db) == [(1, "cancelled", "not needed"), (2, "cancelled", "not needed")]
    assert woken.is_set()  # published after commit


async def test_values_of_each_job_are_bound_per_job(db: Database) -> None:
    pool = Pool(db, Notifier(), lambda: NOW)

    def assign(tx: PoolTransaction) -> None:
        tx.move(refs(tx.conn, 1, 2), JobState.ASSIGNED, each=[{"pilot_id": 7}, {"pilot_id": 8}])

    await pool.write(assign)
    pilots = db.run_sync(lambda conn: dict(conn.execute(select(jobs.c.id, jobs.c.pilot_id)).all()))
    assert pilots == {1: 7, 2: 8, 3: None}


async def test_a_forbidden_move_writes_nothing(db: Database) -> None:
    notifier = Notifier()
    woken = notifier.events.waiter("alice")
    pool = Pool(db, notifier, lambda: NOW)

    def reopen(tx: PoolTransaction) -> None:
        # job 2 may be assigned; job 3 has finished, and nothing leaves a final state
        tx.move(refs(tx.conn, 2), JobState.ASSIGNED)
        tx.move(refs(tx.conn, 3), JobState.QUEUED)

    with pytest.raises(IllegalTransition, match="finished -> queued"):
        await pool.write(reopen)
    # the whole transaction rolled back: job 2's move too, and no history, no wake-up
    assert states(db) == {1: "queued", 2: "queued", 3: "finished"}
    assert history(db) == []
    await asyncio.sleep(0)
    assert not woken.is_set()
