"""What running jobs use, watched while they run: memory and walltime held to what each
asked for (see :mod:`.limits`), and the GPUs' memory and utilisation sampled (see
:mod:`.gpus`). The runner dispatches jobs; this watch measures them and tells the runner
which job overran, for the runner to end it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from farside_protocol.units import format_memory

from .gpus import SAMPLE_INTERVAL as GPU_SAMPLE_INTERVAL
from .gpus import GpuReading, read_gpus
from .held import HeldJob
from .limits import WATCH_INTERVAL, tree_cpu, tree_rss

#: ``(job, resource, message)``: the job used more of ``resource`` than it asked for
Overrun = Callable[[HeldJob, str, str], None]


class UsageWatch:
    """Checks the running jobs a few times a second while any runs (on the event loop)."""

    def __init__(
        self,
        running: Mapping[int, HeldJob],
        on_overrun: Overrun,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._running = running
        self._on_overrun = on_overrun
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._next_gpu_sample = 0.0
        self._gpu_sample: asyncio.Future[dict[str, GpuReading]] | None = None

    def arm(self) -> None:
        """Check again soon, if jobs run and no check is due already."""
        if self._timer is None and self._running:
            self._timer = self._loop.call_later(WATCH_INTERVAL, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """Report jobs that use more memory or time than they asked for (resource errors)."""
        self._timer = None
        now = time.time()
        for job in list(self._running.values()):
            if job.worker is None:
                continue
            res = job.resources
            elapsed = now - job.started
            if elapsed > res.walltime:
                self._on_overrun(
                    job,
                    "walltime",
                    f"walltime exceeded: the job ran {elapsed:.1f}s, longer than the "
                    f"{res.walltime}s it asked for; ask for more (walltime=...)",
                )
                continue
            rss = tree_rss(job.worker.pid)
            job.peak_rss = max(job.peak_rss, rss)
            if job.series.due(elapsed):
                job.series.add(elapsed, rss, tree_cpu(job.worker.pid))
            if rss > res.memory:
                self._on_overrun(
                    job,
                    "memory",
                    f"out of memory: the job used {format_memory(rss)}, more than the "
                    f"{format_memory(res.memory)} it asked for; ask for more (memory=...)",
                )
        self._sample_gpus(now)
        self.arm()

    def _sample_gpus(self, now: float) -> None:
        """Every few seconds while GPU jobs run, read their devices (off the loop)."""
        if now < self._next_gpu_sample or self._gpu_sample is not None:
            return
        if not any(job.devices for job in self._running.values()):
            return
        self._next_gpu_sample = now + GPU_SAMPLE_INTERVAL
        self._gpu_sample = self._loop.run_in_executor(None, read_gpus)
        self._gpu_sample.add_done_callback(self._gpus_read)

    def _gpus_read(self, sample: asyncio.Future[dict[str, GpuReading]]) -> None:
        self._gpu_sample = None
        readings = sample.result() if not sample.cancelled() else {}
        for job in self._running.values():
            seen = [readings[d] for d in job.devices if d in readings]
            if not seen:
                continue
            job.peak_gpu_memory = max(job.peak_gpu_memory, sum(r.memory for r in seen))
            job.gpu_utilization_sum += sum(r.utilization for r in seen) / len(seen)
            job.gpu_samples += 1
