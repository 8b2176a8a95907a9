"""The pilot: register, then acquire, run, heartbeat and report until it is time to leave.

Three loops share one :class:`GatewayClient` (each holds its own connection):

* acquire: keeps a long-poll for work in flight whenever the pilot has room;
* heartbeat: a long-poll too, answered early when a held job must be dropped;
* reporter: sends updates and log lines in small batches;
* holding: gives back held jobs that waited too long for room (see ``holding``).

Jobs run in worker processes managed by a :class:`JobRunner`. The pilot leaves when the
gateway says it is not needed and it has been idle past its idle timeout, when its
walltime is nearly spent, on SIGTERM/SIGINT, or when the gateway refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable

from farside_protocol.errors import (
    ApiError,
    FarsideError,
    Forbidden,
    GatewayUnreachable,
    Unauthorized,
)
from farside_protocol.pilot_api import (
    AcquireRequest,
    FreeShape,
    HeartbeatRequest,
    JobUpdate,
    PilotRegistered,
    PilotRegistration,
)

from . import __version__
from .client import GatewayClient
from .config import PilotConfig, make_workdir
from .held import HeldJob
from .holding import Holding
from .outcomes import Outcomes, killed_outcome
from .reporter import Reporter
from .runner import JobRunner
from .slots import Prefetch, Shape, Slot
from .worker import JobOutcome, Stream

log = logging.getLogger(__name__)

WALLTIME_MARGIN = 60.0


class Pilot:
    """One pilot on one batch slot: ``exit_code = await Pilot(config).run()``."""

    def __init__(self, config: PilotConfig) -> None:
        self.config = config
        self.client = GatewayClient(config.gateway_url, config.token, config.gateway_grace)
        self.slot = Slot(Shape(config.cores, config.memory, config.gpus), config.gpu_ids)
        self.prefetch = Prefetch(config.prefetch)
        self.registered: PilotRegistered | None = None
        self.exit_reason = ""
        self._exit_code = 0
        self._fatal = False
        self._signalled = False
        self._walltime_spent = False
        self._started = time.monotonic()
        self._idle_since: float | None = time.monotonic()
        self._room = asyncio.Event()
        self._done = asyncio.Event()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.reporter = Reporter(self.client, on_lost=self._lost)
        self.outcomes = Outcomes(self.client, self.reporter, self._spawn, self._note_activity)
        self.runner: JobRunner | None = None
        self.holding: Holding | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        workdir = make_workdir(self.config)
        self.runner = JobRunner(self.slot, workdir, self, loop, gateway_url=self.config.gateway_url)
        try:
            try:
                self.registered = await self.client.register(self._registration())
            except (ApiError, GatewayUnreachable) as exc:
                log.error("cannot register with the gateway: %s", exc)
                return 1
            log.info(
                "registered as pilot %s on site %s (%d cores, %d bytes)",
                self.registered.pilot_id,
                self.config.site,
                self.config.cores,
                self.config.memory,
            )
            self._install_signals(loop)
            holding = self.holding = Holding(
                self.client,
                self.runner,
                self.outcomes,
                self._spawn,
                self._note_activity,
                self.config.hold_limit,
            )
            tasks = [
                asyncio.create_task(self._guard(self._acquire_loop())),
                asyncio.create_task(self._guard(self._heartbeat_loop())),
                asyncio.create_task(self._guard(self.reporter.run())),
                asyncio.create_task(self._guard(holding.run())),
            ]
            await self._done.wait()
            await self._leave(tasks)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.runner.close()
            await self.runner.wait_closed()
            await self.client.aclose()
            shutil.rmtree(workdir, ignore_errors=True)
        log.info("pilot leaves: %s", self.exit_reason)
        return self._exit_code

    def _registration(self) -> PilotRegistration:
        return PilotRegistration(
            site=self.config.site,
            cores=self.config.cores,
            memory=self.config.memory,
            gpus=self.config.gpus,
            walltime=self._walltime_left(),
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            batch_id=self.config.batch_id,
            pilot_id=self.config.pilot_id,
            version=__version__,
        )

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)

    def stop(self, why: str = "stop requested") -> None:
        """Leave: take no more jobs, give running ones a short grace (a second call: none)."""
        if self._signalled:
            log.warning("%s again: killing running jobs now", why)
            self.config.shutdown_grace = 0.0
            self._room.set()
            return
        log.info(
            "%s: finishing running jobs (up to %.0f s), then leaving",
            why,
            self.config.shutdown_grace,
        )
        self._signalled = True
        self._finish(f"stopped by {why}")

    def _finish(self, reason: str) -> None:
        if not self._done.is_set():
            self.exit_reason = reason
            self._done.set()

    def _fail(self, reason: str) -> None:
        log.error("%s", reason)
        if not self._done.is_set():
            self._fatal = True
            self._exit_code = 1
        self._finish(reason)

    async def _guard(self, loop_body: Awaitable[None]) -> None:
        try:
            await loop_body
        except asyncio.CancelledError:
            raise
        except (Unauthorized, Forbidden) as exc:
            self._fail(
                f"the gateway refused this pilot's token ({exc}); check {self._token_hint()}"
            )
        except GatewayUnreachable as exc:
            self._fail(f"giving up after {self.config.gateway_grace:.0f} s: {exc}")
        except Exception as exc:
            log.exception("pilot loop crashed")
            self._fail(f"internal error: {type(exc).__name__}: {exc}")

    @staticmethod
    def _token_hint() -> str:
        return "FARSIDE_PILOT_TOKEN (or --token) and that the pilot was not removed"

    async def _leave(self, tasks: list[asyncio.Task[None]]) -> None:
        assert self.runner is not None
        tasks[0].cancel()
        deadline = time.monotonic() + self.config.shutdown_grace
        while self._signalled and self.runner.running and not self._fatal:
            remaining = (
                min(deadline, time.monotonic() + self.config.shutdown_grace) - time.monotonic()
            )
            if remaining <= 0:
                break
            self._room.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._room.wait()
        for job in self.runner.kill_running():
            self.outcomes.report_end(job, killed_outcome(job))
        if not self._fatal:
            settle_time = self.config.shutdown_grace + 5 if self._signalled else 30.0
            if self._side_tasks:
                await asyncio.wait(self._side_tasks, timeout=settle_time)
            if not await self.reporter.settle(settle_time):
                log.warning("some reports could not be sent before leaving")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.registered is not None and not self._fatal:
            try:
                await self.client.exit(self.exit_reason, grace=5.0)
            except FarsideError as exc:
                log.warning("could not tell the gateway that this pilot leaves: %s", exc)

    # ------------------------------------------------------------------ acquire

    def _walltime_left(self) -> int | None:
        if self.config.walltime is None:
            return None
        return max(0, int(self.config.walltime - (time.monotonic() - self._started)))

    @property
    def idle_seconds(self) -> float:
        return 0.0 if self._idle_since is None else time.monotonic() - self._idle_since

    def _note_activity(self) -> None:
        assert self.runner is not None
        if self.runner.idle and not self.outcomes.uploading:
            if self._idle_since is None:
                self._idle_since = time.monotonic()
            if self._walltime_spent:
                self._finish("walltime nearly used up")
        else:
            self._idle_since = None

    def _may_retire(self) -> bool:
        assert self.runner is not None
        return (
            self.runner.idle
            and not self.outcomes.uploading
            and self.idle_seconds >= self.config.idle_timeout
        )

    def _acquire_request(self, want: int, wait: float) -> AcquireRequest:
        # Jobs fetched ahead must fit the whole slot; without prefetch, what is free now.
        free = self.slot.free
        shape = self.slot.total if self.prefetch.extra > 0 or free.cores < 1 else free
        return AcquireRequest(
            max_jobs=min(want, 10_000),
            cores=shape.cores,
            memory=shape.memory,
            gpus=shape.gpus,
            walltime_left=self._walltime_left(),
            idle_seconds=self.idle_seconds,
            idle_timeout=self.config.idle_timeout,
            wait=wait,
            free=FreeShape.model_construct(cores=free.cores, memory=free.memory, gpus=free.gpus),
        )

    async def _acquire_loop(self) -> None:
        assert self.registered is not None
        assert self.runner is not None
        assert self.holding is not None
        holding = self.holding
        wait = min(self.registered.max_poll, 300.0)
        while True:
            left = self._walltime_left()
            if left is not None and left < WALLTIME_MARGIN:
                log.info("less than %.0f s of walltime left: taking no more jobs", WALLTIME_MARGIN)
                self._walltime_spent = True
                self._note_activity()
                return
            self.prefetch.observe_running(self.runner.longest_running())
            want = self.prefetch.want(self.slot.free.cores, len(self.runner.queue))
            if want <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            sent = time.monotonic()
            answer = await self.client.acquire(self._acquire_request(want, wait))
            for assignment in answer.jobs:
                holding.accept(assignment)
            if answer.jobs:
                self.runner.dispatch()
                self._note_activity()
                continue
            if answer.retire:
                if self._may_retire():
                    self._finish("idle and not needed by the site")
                    return
                await asyncio.sleep(
                    min(wait, max(0.1, self.config.idle_timeout - self.idle_seconds))
                )
            elif time.monotonic() - sent < wait / 10:
                # The gateway did not hold the poll; do not turn that into a busy loop.
                await asyncio.sleep(min(1.0, wait))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._guard(coro))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ------------------------------------------------------------------ heartbeat

    async def _heartbeat_loop(self) -> None:
        assert self.registered is not None
        assert self.runner is not None
        interval = min(self.registered.heartbeat_interval, self.registered.max_poll, 300.0)
        while True:
            held = self.runner.held_ids() | self.reporter.unsettled | self.outcomes.uploading
            sent = time.monotonic()
            answer = await self.client.heartbeat(
                HeartbeatRequest(
                    held=sorted(held), walltime_left=self._walltime_left(), wait=interval
                )
            )
            for job_id in answer.drop:
                log.info("gateway dropped job %s", job_id)
                self._drop(job_id)
            for job_id in answer.debug:
                if self.runner.dump_stack(job_id):
                    log.info("job %s: stack dump asked for", job_id)
            if answer.retire and self._may_retire():
                self._finish("idle and not needed by the site")
                return
            elapsed = time.monotonic() - sent
            if not answer.drop and elapsed < interval / 10:
                await asyncio.sleep(interval - elapsed)

    def _drop(self, job_id: int) -> None:
        assert self.runner is not None
        self.reporter.forget({job_id})
        if self.runner.drop(job_id):
            self._room.set()
        self._note_activity()

    def _lost(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self._drop(job_id)

    # ------------------------------------------------------------------ runner events

    def job_started(self, job: HeldJob) -> None:
        self.reporter.update(
            JobUpdate.model_construct(
                job_id=job.job_id, attempt=job.attempt, state="running", time=job.started
            )
        )

    def job_output(self, job: HeldJob, stream: Stream, when: float, text: str) -> None:
        self.reporter.log(job.job_id, job.attempt, stream, when, text)

    def job_ended(self, job: HeldJob, outcome: JobOutcome) -> None:
        if outcome.error_class == "system" and self.config.batch_id:
            outcome = dataclasses.replace(
                outcome, error=f"{outcome.error} (batch job {self.config.batch_id})"
            )
        self.prefetch.observe(outcome.wall_time)
        self.outcomes.report_end(job, outcome)
        self._room.set()
        self._note_activity()
