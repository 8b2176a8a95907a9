"""Heartbeats in batches: every beat that arrives while one write transaction runs goes
into the next one.

A beat renews the pilot's leases, says which of the jobs it holds it must drop (cancelled
or taken away) and hands it the stack dumps its jobs' owners asked for. Done alone, that
is a read, a write transaction of three statements and two thread hops per beat; 10,000
pilots send 2,000 beats a second. Batched, a transaction renews the leases of every pilot
that beat meanwhile with the same few statements, whatever their number, and the answer
to each beat is the same as it would have been alone (``tests/unit/test_heartbeats.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select, update

from farside_protocol import JobState, PilotState

from ..db import Database
from ..db.schema import debug_requests, jobs, pilots
from .outcomes import ACTIVE, LeasePolicy

log = logging.getLogger(__name__)

#: a pilot in one of these states has its leases renewed; any other is told to retire
BEATING = (PilotState.RUNNING.value, PilotState.RETIRING.value)


@dataclass(frozen=True)
class Beat:
    pilot_id: int
    held: tuple[int, ...]


@dataclass(frozen=True)
class BeatAnswer:
    #: the pilot's state (None: no such pilot)
    state: str | None
    drop: list[int] = field(default_factory=list)
    debug: list[int] = field(default_factory=list)


def beat_many(
    conn: Connection, beats: list[Beat], policy: LeasePolicy, now: float
) -> list[BeatAnswer]:
    """Renew the leases of every beating pilot among ``beats``; one answer per beat."""
    ids = sorted({b.pilot_id for b in beats})
    states: dict[int, str] = {
        row.id: row.state
        for row in conn.execute(select(pilots.c.id, pilots.c.state).where(pilots.c.id.in_(ids)))
    }
    live = [i for i in ids if states.get(i) in BEATING]
    debug: dict[int, list[int]] = {}
    still: set[tuple[int, int]] = set()
    if live:
        conn.execute(update(pilots).where(pilots.c.id.in_(live)).values(last_seen=now))
        conn.execute(
            update(jobs)
            .where(jobs.c.pilot_id.in_(live), jobs.c.state.in_(ACTIVE))
            .values(lease_expires=now + policy.lease_timeout)
        )
        taken = conn.execute(
            debug_requests.delete()
            .where(debug_requests.c.pilot_id.in_(live))
            .returning(debug_requests.c.pilot_id, debug_requests.c.job_id)
        ).all()
        for row in taken:
            debug.setdefault(row.pilot_id, []).append(row.job_id)
        held = sorted({j for b in beats if states.get(b.pilot_id) in BEATING for j in b.held})
        if held:
            # a job the pilot finished is settled, not taken away: it need not be dropped
            kept_states = [*ACTIVE, JobState.FINISHED.value]
            still = {
                (row.id, row.pilot_id)
                for row in conn.execute(
                    select(jobs.c.id, jobs.c.pilot_id).where(
                        jobs.c.id.in_(held), jobs.c.state.in_(kept_states)
                    )
                )
            }
    answers = []
    handed: set[int] = set()
    for b in beats:
        state = states.get(b.pilot_id)
        if state not in BEATING:
            answers.append(BeatAnswer(state=state, drop=list(b.held)))
            continue
        drop = sorted(j for j in set(b.held) if (j, b.pilot_id) not in still)
        # each stack dump is handed out once, to the first of a pilot's beats in the batch
        dumps = sorted(debug.get(b.pilot_id, [])) if b.pilot_id not in handed else []
        handed.add(b.pilot_id)
        answers.append(BeatAnswer(state=state, drop=drop, debug=dumps))
    return answers


class HeartbeatBatcher:
    """Collects beats and writes them in batches: the first beat starts a flush; every beat
    that comes while a batch is being written waits for the next one."""

    def __init__(self, db: Database, policy: LeasePolicy, now: Callable[[], float]) -> None:
        self.db = db
        self.policy = policy
        self.now = now
        self._pending: list[tuple[Beat, asyncio.Future[BeatAnswer]]] = []
        self._flushing: asyncio.Task[None] | None = None
        #: write transactions so far (fewer than beats when they come together)
        self.transactions = 0

    async def beat(self, pilot_id: int, held: list[int]) -> BeatAnswer:
        future: asyncio.Future[BeatAnswer] = asyncio.get_running_loop().create_future()
        self._pending.append((Beat(pilot_id, tuple(held)), future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="heartbeats")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self.transactions += 1
            try:
                answers: list[BeatAnswer] = await self.db.write(
                    beat_many, [b for b, _ in batch], self.policy, self.now()
                )
            except Exception as exc:  # each beat's request fails alone, as it would have
                log.warning("a batch of %d heartbeats failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(answer)

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
