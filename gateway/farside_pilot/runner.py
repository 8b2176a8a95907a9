"""Runs held jobs on worker processes as far as the slot's free resources allow.

The :class:`JobRunner` lives on the pilot's event loop. Worker messages arrive on reader
threads and are handed over with ``call_soon_threadsafe``, so all state here is touched by
one thread only. What happens to jobs is told to the pilot through a :class:`RunnerEvents`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from typing import Protocol

from farside_protocol import env

from .held import HeldJob
from .slots import Slot
from .usage import UsageWatch
from .worker import JobOutcome, Stream
from .workers import Message, WorkerProcess, describe_exit

log = logging.getLogger(__name__)

# Above this, a payload is written to the worker's pipe from a thread so that a worker still
# starting up cannot stall the event loop.
BIG_PAYLOAD = 64 * 1024


class RunnerEvents(Protocol):
    """What the runner tells its owner. All calls happen on the event loop."""

    def job_started(self, job: HeldJob) -> None: ...

    def job_output(self, job: HeldJob, stream: Stream, when: float, text: str) -> None: ...

    def job_ended(self, job: HeldJob, outcome: JobOutcome) -> None: ...


class JobRunner:
    """Queue and run jobs; spawn workers lazily, at most one per core."""

    def __init__(
        self,
        slot: Slot,
        workdir: str,
        events: RunnerEvents,
        loop: asyncio.AbstractEventLoop,
        max_workers: int | None = None,
        gateway_url: str = "",
    ) -> None:
        self.slot = slot
        self.gateway_url = gateway_url  # for the jobs that call the gateway (workflow bodies)
        self.workdir = workdir
        self.events = events
        self._loop = loop
        self.max_workers = max_workers or slot.total.cores
        self.queue: dict[int, HeldJob] = {}
        self.running: dict[int, HeldJob] = {}
        self._idle_workers: list[WorkerProcess] = []
        self._workers: set[WorkerProcess] = set()
        self._serial = 0
        self._usage = UsageWatch(self.running, self._overrun, loop)

    @property
    def idle(self) -> bool:
        return not self.queue and not self.running

    def held_ids(self) -> set[int]:
        return set(self.queue) | set(self.running)

    def add(self, job: HeldJob) -> None:
        self.queue[job.job_id] = job

    def longest_running(self) -> float:
        """Seconds the longest-running job has run so far (0 when none runs)."""
        if not self.running:
            return 0.0
        return max(0.0, time.time() - min(job.started for job in self.running.values()))

    def take_waiting(self, longer_than: float) -> list[HeldJob]:
        """Remove and return the queued jobs, ready to start, that have waited for room
        longer than ``longer_than`` seconds; the pilot gives them back to the gateway."""
        self.dispatch()  # what can start now is not waiting
        now = time.monotonic()
        waiting = [
            job for job in self.queue.values() if job.ready and now - job.held_since > longer_than
        ]
        for job in waiting:
            del self.queue[job.job_id]
        return waiting

    def dispatch(self) -> None:
        """Start every queued job that fits what is free now (later ones may overtake)."""
        for job in list(self.queue.values()):
            if self.slot.free.cores < 1:
                return  # the common case with a long prefetch queue: stop scanning it
            if not job.ready or not self.slot.can_start(job.resources):
                continue
            if job.resources.gpus or job.assignment.token:
                # a worker of its own, started with its devices (CUDA reads
                # CUDA_VISIBLE_DEVICES once, when a process first uses it) or, for a
                # workflow body, with the token it submits its children with
                if not self._room_for_a_worker():
                    return
                del self.queue[job.job_id]
                job.devices = self.slot.take(job.resources)
                worker = self._start_worker(job.devices, self._job_env(job))
            else:
                taken = self._take_worker()
                if taken is None:
                    return
                worker = taken
                del self.queue[job.job_id]
                self.slot.take(job.resources)
            self.running[job.job_id] = job
            job.worker = worker
            worker.job_id = job.job_id
            job.started = time.time()
            self.events.job_started(job)
            self._send(worker, job)
        self._arm_watch()

    # ------------------------------------------------------------ memory and walltime

    def _arm_watch(self) -> None:
        self._usage.arm()

    def _overrun(self, job: HeldJob, resource: str, message: str) -> None:
        assert job.worker is not None
        log.info("job %s: %s", job.job_id, message)
        self._kill(job.worker)
        outcome = JobOutcome(
            exit_code=128 + 9,
            error_class="resource",
            error=message,
            result=None,
            wall_time=max(0.0, time.time() - job.started),
            cpu_time=0.0,
            max_rss=job.peak_rss or None,
            resource=resource,
        )
        self._finish(job, outcome)

    def _send(self, worker: WorkerProcess, job: HeldJob) -> None:
        assert job.payload is not None
        scratch = self._scratch(worker)
        size = len(job.payload) + sum(map(len, (job.inputs or {}).values()))
        args = (job.job_id, job.payload, scratch, job.inputs, job.assignment.kind)
        if job.inputs:
            job.inputs = {}  # the worker has them now; the pilot need not hold them too
        if size > BIG_PAYLOAD:
            self._loop.run_in_executor(None, worker.run, *args)
        else:
            worker.run(*args)

    def _scratch(self, worker: WorkerProcess) -> str:
        return os.path.join(self.workdir, f"worker-{worker.pid}")

    def _take_worker(self) -> WorkerProcess | None:
        if self._idle_workers:
            return self._idle_workers.pop()
        if len(self._workers) >= self.max_workers:
            return None
        return self._start_worker()

    def _room_for_a_worker(self) -> bool:
        """Whether a new worker may start, stopping an idle one if that makes room."""
        if len(self._workers) < self.max_workers:
            return True
        if not self._idle_workers:
            return False
        idle = self._idle_workers.pop()
        idle.stop()
        self._workers.discard(idle)
        return True

    def _job_env(self, job: HeldJob) -> dict[str, str]:
        """Variables only this job's worker gets: a workflow body's gateway and token."""
        token = job.assignment.token
        if not token:
            return {}
        return {env.GATEWAY_URL: self.gateway_url, env.TOKEN: token}

    def _start_worker(
        self, devices: list[str] | None = None, extra_env: dict[str, str] | None = None
    ) -> WorkerProcess:
        """A new worker; with ``devices``, for one job, which sees only those GPUs (none
        for a CPU job) and gets ``extra_env``. On a slot with GPUs, the other workers see
        none (CPU jobs must not take them)."""
        worker_env = None
        if devices is not None or self.slot.total.gpus:
            worker_env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices or [])}
        if extra_env:
            worker_env = {**(worker_env or os.environ), **extra_env}
        worker = WorkerProcess(self._from_thread, cwd=self.workdir, env=worker_env)
        worker.single_use = devices is not None
        self._workers.add(worker)
        log.debug("started worker %s", worker.pid)
        return worker

    def _from_thread(self, worker: WorkerProcess, message: Message) -> None:
        # A killed worker's reader may outlive the pilot's loop; its news no longer matters.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_message, worker, message)

    def _current(self, worker: WorkerProcess, job_id: int | None) -> HeldJob | None:
        # Messages of a killed worker, or about a dropped job, may still be in the pipe.
        job = self.running.get(job_id) if job_id is not None else None
        return job if job is not None and job.worker is worker else None

    def _on_message(self, worker: WorkerProcess, message: Message) -> None:
        kind = message[0]
        if kind == "log":
            _, job_id, stream, when, text = message
            job = self._current(worker, job_id)
            if job is not None:
                self.events.job_output(job, stream, when, text)
        elif kind == "done":
            _, job_id, outcome = message
            job = self._current(worker, job_id)
            worker.job_id = None
            if worker.single_use:
                worker.stop()  # its GPUs go back with the job; the next GPU job gets its own
            elif worker in self._workers and not worker.killed:
                self._idle_workers.append(worker)
            if job is not None:
                self._finish(job, outcome)
        elif kind == "exited":
            self._on_exit(worker, message[1])

    def _on_exit(self, worker: WorkerProcess, returncode: int) -> None:
        self._workers.discard(worker)
        if worker in self._idle_workers:
            self._idle_workers.remove(worker)
        worker.close()
        shutil.rmtree(self._scratch(worker), ignore_errors=True)
        job = self._current(worker, worker.job_id)
        if job is None:
            if not worker.killed and returncode != 0:
                log.warning("idle worker %s ended: %s", worker.pid, describe_exit(returncode))
            self.dispatch()
            return
        exit_code = 128 - returncode if returncode < 0 else returncode
        # a batch system ends a job by signalling every process in it (scancel, preemption,
        # walltime): that is the site's doing, not the user's code
        by_site = returncode == -signal.SIGTERM
        why = "the job ended its worker process"
        if by_site:
            why = "the pilot's batch job is being ended"
        outcome = JobOutcome(
            exit_code=exit_code,
            error_class="system" if by_site else "user",
            error=f"{why}: {describe_exit(returncode)}",
            result=None,
            wall_time=max(0.0, time.time() - job.started),
            cpu_time=0.0,
            max_rss=None,
        )
        self._finish(job, outcome)

    def _finish(self, job: HeldJob, outcome: JobOutcome) -> None:
        del self.running[job.job_id]
        self.slot.release(job.resources, job.devices)
        job.worker = None
        self.events.job_ended(job, outcome)
        self.dispatch()

    def dump_stack(self, job_id: int) -> bool:
        """Have a running job's worker write its threads' Python stacks to the job's
        stderr (the worker's faulthandler, on SIGUSR1). False if the job does not run."""
        job = self.running.get(job_id)
        if job is None or job.worker is None:
            return False
        if not job.worker.serving.is_set():
            # a worker still starting has no handler yet: SIGUSR1 would end it; ask again soon
            self._loop.call_later(0.2, self.dump_stack, job_id)
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(job.worker.pid, signal.SIGUSR1)
        return True

    def drop(self, job_id: int) -> bool:
        """Forget a held job; kill its worker if it runs. True if the job was held."""
        if self.queue.pop(job_id, None) is not None:
            return True
        job = self.running.pop(job_id, None)
        if job is None:
            return False
        self.slot.release(job.resources, job.devices)
        if job.worker is not None:
            self._kill(job.worker)
        self.dispatch()
        return True

    def _kill(self, worker: WorkerProcess) -> None:
        worker.kill()
        self._workers.discard(worker)

    def kill_running(self) -> list[HeldJob]:
        """Kill every running job (shutdown); returns them."""
        jobs = list(self.running.values())
        self.running.clear()
        for job in jobs:
            self.slot.release(job.resources, job.devices)
            if job.worker is not None:
                self._kill(job.worker)
        return jobs

    def close(self) -> None:
        """Stop all workers; running jobs are killed."""
        self._usage.stop()
        self.kill_running()
        self.queue.clear()
        for worker in list(self._workers):
            worker.stop()
            worker.close()
        self._idle_workers.clear()

    async def wait_closed(self, within: float = 5.0) -> None:
        """Wait for stopped workers to exit, killing stragglers."""
        workers = list(self._workers)
        deadline = time.monotonic() + within
        for worker in workers:
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(0.01, remaining)):
                    await asyncio.to_thread(worker.process.wait)
            except TimeoutError:
                worker.kill()
        self._workers.clear()
