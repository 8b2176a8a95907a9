"""Jobs this pilot holds but has not started: taking them in, fetching what they need,
and giving back those that wait too long for room.

A pilot fetches jobs ahead of its free cores while jobs are short (see ``slots.Prefetch``).
When the job in front then runs long, the jobs behind it would wait in this pilot although
another pilot, or one the provisioner starts for them, could run them now. Every job that
has waited ready but unstarted longer than the pilot's *hold limit* goes back to the pool
(``POST /pilots/{id}/release``): queued again in its old place, no attempt counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from farside_protocol.errors import ApiError, Conflict, NotFound
from farside_protocol.pilot_api import Assignment, ReleaseRequest

from .client import GatewayClient
from .held import HeldJob
from .outcomes import Outcomes, system_failure
from .runner import JobRunner

log = logging.getLogger(__name__)


class Holding:
    """Takes in assigned jobs; ``await run()`` (until cancelled) gives back those that wait."""

    def __init__(
        self,
        client: GatewayClient,
        runner: JobRunner,
        outcomes: Outcomes,
        spawn: Callable[[Awaitable[None]], None],
        on_change: Callable[[], None],
        limit: float,
    ) -> None:
        self.client = client
        self.runner = runner
        self.outcomes = outcomes
        self.spawn = spawn
        self.on_change = on_change
        self.limit = limit

    def accept(self, assignment: Assignment) -> None:
        job = HeldJob(assignment, payload=assignment.payload)
        slot = self.runner.slot
        if not slot.fits_slot(assignment.resources):
            self.outcomes.report_end(
                job, system_failure(f"job needs {assignment.resources}, slot is {slot.total}")
            )
            return
        self.runner.add(job)
        if not job.ready:
            self.spawn(self._fetch(job))

    async def _fetch(self, job: HeldJob) -> None:
        """Fetch what the job needs to start: a payload too large to ride along with the
        assignment, and the outcomes of its input jobs."""
        what = "payload"
        try:
            payload = job.payload
            if payload is None:
                payload = await self.client.payload(job.job_id)
            what = "inputs"
            inputs = await self.client.inputs(job.job_id, job.assignment.inputs)
        except (NotFound, Conflict) as exc:
            self.runner.drop(job.job_id)
            # a missing input is news for the gateway; otherwise the job is no longer ours
            if what == "inputs" and isinstance(exc, NotFound):
                self.outcomes.report_end(job, system_failure(f"cannot fetch an input: {exc}"))
            self.on_change()
            return
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            self.runner.drop(job.job_id)
            self.outcomes.report_end(job, system_failure(f"cannot fetch the job's {what}: {exc}"))
            return
        if job.job_id in self.runner.queue:
            job.payload, job.inputs = payload, inputs
            self.runner.dispatch()

    async def run(self) -> None:
        period = max(0.1, min(1.0, self.limit / 2))
        while True:
            await asyncio.sleep(period)
            await self.give_back_waiting()

    async def give_back_waiting(self) -> None:
        waiting = self.runner.take_waiting(self.limit)
        if not waiting:
            return
        reason = f"it waited over {self.limit:g} s for room in this pilot"
        try:
            answer = await self.client.release(
                ReleaseRequest(job_ids=[job.job_id for job in waiting], reason=reason)
            )
        except ApiError as exc:
            if exc.status in (401, 403):
                raise
            # keep them: the pilot still holds their leases and runs them when it can
            log.warning("could not give back %d waiting job(s): %s", len(waiting), exc)
            for job in waiting:
                self.runner.add(job)
            return
        log.info("gave back %d job(s) that %s: %s", len(answer.released), reason, answer.released)
        self.on_change()
