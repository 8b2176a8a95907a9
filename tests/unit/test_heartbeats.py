"""Batched heartbeats answer each beat as it would have been answered alone, and renew
exactly the leases of the pilots that beat (a real SQLite pool, migrated)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from farside_gateway.db import Database
from farside_gateway.db.schema import debug_requests, jobs, pilots
from farside_gateway.pool.heartbeats import Beat, HeartbeatBatcher, beat_many
from farside_gateway.pool.outcomes import LeasePolicy

POLICY = LeasePolicy(lease_timeout=30.0, max_system_attempts=3, max_resource_attempts=3, sites=())
NOW = 1000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    database.migrate()

    def fill(conn: object) -> None:
        rows = [
            {"id": 1, "site": "s", "state": "running", "last_seen": 0.0},
            {"id": 2, "site": "s", "state": "retiring", "last_seen": 0.0},
            {"id": 3, "site": "s", "state": "ended", "last_seen": 0.0},
            {"id": 4, "site": "s", "state": "running", "last_seen": 0.0},
        ]
        conn.execute(insert(pilots), rows)  # type: ignore[attr-defined]
        job = dict(owner="u", kind="function", cores=1, memory=1, walltime=60, gpus=0)
        job.update(max_attempts=3, payload_size=0, created_at=0.0, lease_expires=None)
        conn.execute(  # type: ignore[attr-defined]
            insert(jobs),
            [
                {**job, "id": 10, "state": "running", "pilot_id": 1, "lease_expires": 5.0},
                {**job, "id": 11, "state": "cancelled", "pilot_id": 1},  # taken away
                {**job, "id": 12, "state": "finished", "pilot_id": 1},  # settled: kept
                {**job, "id": 20, "state": "assigned", "pilot_id": 2, "lease_expires": 5.0},
                {**job, "id": 40, "state": "running", "pilot_id": 4, "lease_expires": 5.0},
                {**job, "id": 41, "state": "queued", "pilot_id": None},  # never its
            ],
        )
        conn.execute(  # type: ignore[attr-defined]
            insert(debug_requests), [{"job_id": 10, "pilot_id": 1, "requested_at": 1.0}]
        )

    database.run_sync(fill)
    yield database
    database.close()


def test_a_batch_answers_each_beat_as_alone(db: Database) -> None:
    beats = [
        Beat(1, (10, 11, 12)),
        Beat(2, (20,)),
        Beat(3, (30,)),  # ended: told to retire, everything dropped
        Beat(99, ()),  # unknown
        Beat(1, (10,)),  # the same pilot twice in one batch
    ]
    answers = db.run_sync(beat_many, beats, POLICY, NOW)
    assert [(a.state, a.drop, a.debug) for a in answers] == [
        ("running", [11], [10]),
        ("retiring", [], []),
        ("ended", [30], []),
        (None, [], []),
        ("running", [], []),  # the stack dump was handed out once, with the first beat
    ]

    def leases(conn: object) -> dict[int, float | None]:
        query = select(jobs.c.id, jobs.c.lease_expires)
        return dict(conn.execute(query).all())  # type: ignore[attr-defined]

    expiry = db.run_sync(leases)
    assert expiry[10] == expiry[20] == NOW + POLICY.lease_timeout
    assert expiry[40] == 5.0  # pilot 4 did not beat

    def seen(conn: object) -> dict[int, float]:
        return dict(conn.execute(select(pilots.c.id, pilots.c.last_seen)).all())  # type: ignore[attr-defined]

    assert db.run_sync(seen) == {1: NOW, 2: NOW, 3: 0.0, 4: 0.0}
    # the dump request was taken: the next beat gets none
    (again,) = db.run_sync(beat_many, [Beat(1, ())], POLICY, NOW + 1)
    assert again.debug == []


async def test_concurrent_beats_share_transactions(db: Database) -> None:
    batcher = HeartbeatBatcher(db, POLICY, lambda: NOW)
    answers = await asyncio.gather(*(batcher.beat(p, []) for p in [1, 2, 4] * 20))
    assert {a.state for a in answers} == {"running", "retiring"}
    assert batcher.transactions < 60  # beats that came during a write waited for the next
    await batcher.close()
