"""Batches job updates and log lines to the gateway.

A line printed by a job should reach the gateway within about 100 ms, a result as soon as it
exists, yet a pilot running a thousand tiny jobs a second must not send a thousand requests a
second. So the reporter keeps one request in flight at a time: what gathers meanwhile goes
in the next one (under load the round trip itself is the batching window), requests start at
least :data:`MIN_SPACING` apart, and a job's ``running`` update alone waits up to
:data:`COALESCE` for the job's end, so a short job costs one report, not two. A report is
atomic on the gateway: if it names jobs the pilot no longer holds (cancelled, given to
another pilot), the gateway answers 409 with their ids, and the reporter drops what concerns
them and sends the rest again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from farside_protocol.errors import ApiError, Conflict
from farside_protocol.pilot_api import JobUpdate, LogEntry, ReportRequest

from .client import GatewayClient
from .worker import Stream

log = logging.getLogger(__name__)

MIN_SPACING = 0.005
COALESCE = 0.005
MAX_UPDATES = 10_000
MAX_LOGS = 100_000
MAX_LINE = 1_000_000


class Reporter:
    """Queue of updates and log lines, flushed by :meth:`run`."""

    def __init__(
        self, client: GatewayClient, on_lost: Callable[[list[int]], None] | None = None
    ) -> None:
        self._client = client
        self._on_lost = on_lost
        self._updates: list[JobUpdate] = []
        self._logs: list[LogEntry] = []
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._in_flight: set[int] = set()
        self.sent_requests = 0

    def update(self, update: JobUpdate) -> None:
        self._updates.append(update)
        self._poke()

    def log(self, job_id: int, attempt: int, stream: Stream, when: float, text: str) -> None:
        if len(text) > MAX_LINE:
            text = text[: MAX_LINE - 20] + " [line truncated]"
        entry = LogEntry.model_construct(
            job_id=job_id, attempt=attempt, stream=stream, time=when, text=text
        )
        self._logs.append(entry)
        self._poke()

    def _poke(self) -> None:
        self._settled.clear()
        self._wake.set()

    def forget(self, job_ids: set[int]) -> None:
        """Drop everything not yet sent about these jobs."""
        self._updates = [u for u in self._updates if u.job_id not in job_ids]
        self._logs = [e for e in self._logs if e.job_id not in job_ids]

    @property
    def unsettled(self) -> set[int]:
        """Jobs whose final update the gateway has not acknowledged yet."""
        ending = {u.job_id for u in self._updates if u.state != "running"}
        return ending | self._in_flight

    async def settle(self, within: float | None = None) -> bool:
        """Wait until everything queued so far is sent; False on timeout."""
        try:
            async with asyncio.timeout(within):
                await self._settled.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Flush forever; raises only what the pilot cannot survive (auth, lost gateway)."""
        last = 0.0
        while True:
            await self._wake.wait()
            if not self._logs and all(u.state == "running" for u in self._updates):
                # only starts to tell: give the jobs a moment to end, and say both at once
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(COALESCE):
                        await self._wake.wait()
            pause = last + MIN_SPACING - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            last = time.monotonic()
            self._wake.clear()
            updates, self._updates = self._updates[:MAX_UPDATES], self._updates[MAX_UPDATES:]
            logs, self._logs = self._logs[:MAX_LOGS], self._logs[MAX_LOGS:]
            if updates or logs:
                self._in_flight = {u.job_id for u in updates if u.state != "running"}
                try:
                    await self._send(updates, logs)
                finally:
                    self._in_flight = set()
            if self._updates or self._logs:
                self._wake.set()
            else:
                self._settled.set()

    async def _send(self, updates: list[JobUpdate], logs: list[LogEntry]) -> None:
        while updates or logs:
            self.sent_requests += 1
            try:
                await self._client.report(ReportRequest.model_construct(updates=updates, logs=logs))
                return
            except Conflict as exc:
                lost = {int(j) for j in exc.details.get("job_ids", [])}
                if not lost:
                    log.error("gateway refused a report without naming jobs: %s", exc)
                    return
                log.info("jobs %s are no longer this pilot's; dropping their reports", sorted(lost))
                updates = [u for u in updates if u.job_id not in lost]
                logs = [e for e in logs if e.job_id not in lost]
                self.forget(lost)
                if self._on_lost is not None:
                    self._on_lost(sorted(lost))
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise
                # A report the gateway cannot take will never be taken; resending would loop.
                log.error("gateway refused a report (%s); %d updates lost", exc, len(updates))
                return
