"""Wake-ups across gateway replicas that share one PostgreSQL database (LISTEN/NOTIFY).

A replica's :class:`~farside_gateway.notify.Notifier` wakes only its own waiters. With
several replicas, a job submitted on one must also wake the pilots long-polling, the event
streams and the log followers held by the others, at once rather than at their next
timeout. Each commit's wake-ups (queued work, owners, jobs, pilots) go out as one
``NOTIFY farside`` after it; every replica LISTENs and fires the same keys locally. Waiters
still look again on their timeouts, so a notification lost while a connection was down
costs latency, never correctness; after reconnecting, a replica wakes everyone once.

Why psycopg directly: SQLAlchemy has no API for asynchronous notifications, and psycopg (the
driver SQLAlchemy already uses here) delivers them as an async iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import psycopg
from sqlalchemy import make_url

from .notify import Notifier
from .pool.changes import Changes

log = logging.getLogger(__name__)

CHANNEL = "farside"
MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes; past this: "wake everything"
RECONNECT_DELAY = 2.0


def conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def encode(instance: str, changes: Changes | None) -> str:
    """The notification of one commit's wake-ups; ``None``: new work somewhere.

    >>> encode("a", None)
    '{"i": "a", "q": true}'
    """
    if changes is None:
        return json.dumps({"i": instance, "q": True})
    data: dict[str, Any] = {"i": instance, "q": changes.queued}
    if changes.owners:
        data["o"] = sorted(changes.owners)
    jobs = changes.log_jobs | changes.ended_jobs
    if jobs:
        data["l"] = sorted(jobs)
    if changes.pilots:
        data["p"] = sorted(changes.pilots)
    text = json.dumps(data)
    return text if len(text) <= MAX_PAYLOAD else json.dumps({"i": instance, "all": True})


def apply(notifier: Notifier, data: dict[str, Any]) -> None:
    """Fire, on this replica, the wake-ups another replica's commit caused."""
    if data.get("all"):
        notifier.wake_everyone()
        return
    if data.get("q"):
        notifier.work.fire(notifier.WORK)
    for owner in data.get("o", ()):
        notifier.events.fire(owner)
    for job_id in data.get("l", ()):
        notifier.logs.fire(job_id)
    for pilot_id in data.get("p", ()):
        notifier.pilots.fire(pilot_id)


class PgBus:
    """``await start()``, then ``send(changes)`` after each commit; ``await stop()``."""

    def __init__(self, url: str, notifier: Notifier) -> None:
        self.conninfo = conninfo(url)
        self.notifier = notifier
        self.instance = uuid.uuid4().hex
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="pgbus-listen"),
            asyncio.create_task(self._send_loop(), name="pgbus-send"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def send(self, changes: Changes | None) -> None:
        """Queue one commit's wake-ups for the other replicas (never blocks the caller)."""
        if changes is not None and not (
            changes.queued
            or changes.owners
            or changes.log_jobs
            or changes.ended_jobs
            or changes.pilots
        ):
            return
        with contextlib.suppress(asyncio.QueueFull):  # their timeouts cover an overflow
            self._outbox.put_nowait(encode(self.instance, changes))

    async def _listen(self) -> None:
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if not first:  # what was sent while we were away is lost: look again
                        self.notifier.wake_everyone()
                    first = False
                    async for note in conn.notifies():
                        data = json.loads(note.payload)
                        if data.get("i") != self.instance:
                            apply(self.notifier, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica wake-ups: listening failed (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_DELAY)

    async def _send_loop(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    while True:
                        payload = await self._outbox.get()
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica wake-ups: sending failed (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_DELAY)
