"""How the end of a job reaches the gateway: one update, with the result inline, or the
result uploaded first when it is large."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from farside_protocol.errors import Conflict, NotFound, PayloadTooLarge, result_too_large
from farside_protocol.pilot_api import JobUpdate
from farside_protocol.states import ErrorClass

from .client import GatewayClient
from .held import HeldJob
from .reporter import Reporter
from .worker import JobOutcome

log = logging.getLogger(__name__)

INLINE_RESULT = 256 * 1024


class Outcomes:
    """Reports ended jobs; ``uploading`` holds those whose large result is on its way."""

    def __init__(
        self,
        client: GatewayClient,
        reporter: Reporter,
        spawn: Callable[[Awaitable[None]], None],
        on_settled: Callable[[], None],
    ) -> None:
        self._client = client
        self._reporter = reporter
        self._spawn = spawn
        self._on_settled = on_settled
        self.uploading: set[int] = set()

    def report_end(self, job: HeldJob, outcome: JobOutcome) -> None:
        fields: dict[str, Any] = {
            "job_id": job.job_id,
            "attempt": job.attempt,
            "state": "finished" if outcome.exit_code == 0 else "failed",
            "time": time.time(),
            "exit_code": outcome.exit_code,
            "error_class": ErrorClass(outcome.error_class) if outcome.error_class else None,
            "error": outcome.error[:10_000] if outcome.error else None,
            "wall_time": max(0.0, outcome.wall_time),
            "cpu_time": max(0.0, outcome.cpu_time),
            "max_rss": outcome.max_rss,
            "gpu_memory": job.peak_gpu_memory or None,
            "gpu_utilization": job.gpu_utilization,
            "usage": job.series.points or None,
            "resource": outcome.resource,
        }
        result = outcome.result
        if result is not None and len(result) > INLINE_RESULT:
            self.uploading.add(job.job_id)
            self._spawn(self._upload(job, result, fields))
        else:
            # built from our own measurements: construct, skip re-validating (hot path)
            self._reporter.update(JobUpdate.model_construct(result=result, **fields))

    async def _upload(self, job: HeldJob, result: bytes, fields: dict[str, Any]) -> None:
        try:
            await self._client.upload_result(job.job_id, job.attempt, result)
        except (NotFound, Conflict):
            log.info("job %s is no longer this pilot's; its result is dropped", job.job_id)
            return
        except PayloadTooLarge as exc:
            # the job's own doing, not the pilot's: fail it with a reason the user can act on
            fields.update(
                state="failed",
                exit_code=1,
                error_class=ErrorClass.USER,
                error=result_too_large(len(result), exc.details.get("limit", "its")),
            )
            self._reporter.update(JobUpdate(**fields))
            return
        finally:
            self.uploading.discard(job.job_id)
            self._on_settled()
        self._reporter.update(JobUpdate(result_uploaded=True, **fields))


def system_failure(message: str) -> JobOutcome:
    return JobOutcome(1, "system", message, None, 0.0, 0.0, None)


def killed_outcome(job: HeldJob) -> JobOutcome:
    return JobOutcome(
        exit_code=128 + signal.SIGKILL,
        error_class="system",
        error="the pilot was stopped before the job ended",
        result=None,
        wall_time=max(0.0, time.time() - job.started),
        cpu_time=0.0,
        max_rss=None,
    )
