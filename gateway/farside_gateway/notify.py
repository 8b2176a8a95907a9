"""In-process wake-ups: who waits for what, and waking them when a transaction commits.

Waiters take the current signal *before* they query, then wait on it; a commit that lands
in between has already set it, so no wake-up is lost. Correctness never rests on a wake-up
alone: every waiter also times out and looks again. Other gateway replicas on the same
PostgreSQL database hear of each commit through ``remote`` (see :mod:`.pgbus`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from .pool.changes import Changes


class KeyedSignals:
    """One broadcast signal per key (a user, a job, a pilot), created on demand."""

    def __init__(self) -> None:
        self._events: dict[Hashable, asyncio.Event] = {}

    def waiter(self, key: Hashable) -> asyncio.Event:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def fire(self, key: Hashable) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def fire_all(self) -> None:
        for key in list(self._events):
            self.fire(key)


class Notifier:
    WORK = "work"

    def __init__(self) -> None:
        self.work = KeyedSignals()  # queued jobs appeared (one key)
        self.events = KeyedSignals()  # by owner
        self.logs = KeyedSignals()  # by job id
        self.pilots = KeyedSignals()  # by pilot id: something to drop
        #: tells the other replicas (None: this is the only one)
        self.remote: Callable[[Changes | None], None] | None = None

    def publish(self, changes: Changes) -> None:
        if changes.queued:
            self.work.fire(self.WORK)
        for owner in changes.owners:
            self.events.fire(owner)
        for job_id in changes.log_jobs | changes.ended_jobs:
            self.logs.fire(job_id)
        for pilot_id in changes.pilots:
            self.pilots.fire(pilot_id)
        if self.remote is not None:
            self.remote(changes)

    def wake_work(self) -> None:
        """Something changed where work may go (e.g. a site's status): look again."""
        self.work.fire(self.WORK)
        if self.remote is not None:
            self.remote(None)

    def wake_everyone(self) -> None:
        """Shutdown: let every long-poll and stream look again and notice."""
        for signals in (self.work, self.events, self.logs, self.pilots):
            signals.fire_all()


async def wait_for_signal(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; return whether it was set."""
    if seconds <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
