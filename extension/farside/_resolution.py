"""Futures resolved from the gateway's event stream.

:class:`Results` keeps the futures of jobs this client follows and settles each from the
job's terminal event: with the result riding inline, or fetched (off the listener's thread)
when it is large. A terminal event may arrive before the ``POST /jobs`` answer that names
its job; such events are kept a while (bounded) for :meth:`Results.track` to find.
Watchers hear of a job's end without a future (an offload's intermediate parts).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from farside_protocol import FarsideError, NotFound, TaskError
from farside_protocol.models import JobDetail, JobEvent
from farside_protocol.states import JobState

from ._futures import FarsideFuture
from ._http import Api, is_retryable
from ._outcome import Outcome, outcome_of

if TYPE_CHECKING:
    from ._gateway import BaseGateway

log = logging.getLogger(__name__)

# terminal events for jobs not (yet) tracked here: our own submissions racing their
# POST /jobs answer, or jobs of the same user submitted elsewhere (kept briefly, bounded)
MAX_UNCLAIMED_EVENTS = 10_000
UNCLAIMED_EVENT_TTL = 300.0
RESULT_FETCH_GRACE = 120.0


class Results:
    """The futures and watchers of one :class:`~farside.Gateway`."""

    def __init__(self, gateway: BaseGateway, api: Api) -> None:
        self._gateway = gateway
        self._api = api
        self._lock = threading.Lock()
        self._pending: dict[int, FarsideFuture[Any]] = {}
        self._unclaimed: OrderedDict[int, tuple[float, JobEvent]] = OrderedDict()
        # jobs whose end someone waits to hear of without a future (an offload's parts)
        self._watchers: dict[int, Callable[[JobEvent], None]] = {}
        self._fetcher: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def track(self, job_ids: list[int]) -> list[FarsideFuture[Any]]:
        """Futures for these jobs, settled now for those that have ended already."""
        futures: list[FarsideFuture[Any]] = [FarsideFuture(self._gateway, i) for i in job_ids]
        ready: list[tuple[FarsideFuture[Any], JobEvent]] = []
        with self._lock:
            for future in futures:
                kept = self._unclaimed.pop(future.job_id, None)
                if kept is None:
                    self._pending[future.job_id] = future
                else:
                    ready.append((future, kept[1]))
        for future, event in ready:
            self._resolve(future, event)
        return futures

    def adopt(self, job_ids: list[int]) -> list[FarsideFuture[Any]]:
        """Futures for jobs that may have ended before this client listened (a workflow
        body's journalled calls, a run found again from another kernel).

        The event stream must be open already: a job that ends after its state is read
        here is settled by its event, one that ended before by its stored outcome.
        """
        futures = self.track(job_ids)
        for future in futures:
            if future.done():
                continue
            job = self._api.get(f"/jobs/{future.job_id}", JobDetail)
            if not job.state.terminal:
                continue
            event = JobEvent(
                seq=0,
                job_id=job.id,
                state=job.state,
                time=(job.ended or job.created).timestamp(),
                attempt=job.attempts,
                error_class=job.error_class,
                reason=job.error,
                result_size=None if job.state is JobState.CANCELLED else 0,
            )
            with self._lock:
                self._pending.pop(job.id, None)
            self._resolve(future, event)
        return futures

    def watch(self, job_ids: list[int], ended: Callable[[JobEvent], None]) -> None:
        """Call ``ended(event)`` when each of ``job_ids`` ends (at once if it has)."""
        already = []
        with self._lock:
            for job_id in job_ids:
                kept = self._unclaimed.get(job_id)
                if kept is not None:
                    already.append(kept[1])
                else:
                    self._watchers[job_id] = ended
        for event in already:
            ended(event)

    def on_events(self, events: list[JobEvent]) -> None:
        for event in events:
            if not event.state.terminal:
                continue
            with self._lock:
                watcher = self._watchers.pop(event.job_id, None)
                future = self._pending.pop(event.job_id, None)
                if future is None:
                    self._keep_unclaimed(event)
            if watcher is not None:
                try:
                    watcher(event)
                except Exception:  # a progress display must not stop results
                    log.exception("a job-end callback failed")
            if future is None:
                continue
            try:
                self._resolve(future, event)
            except Exception as exc:
                future._settle(Outcome(error=exc))

    def _keep_unclaimed(self, event: JobEvent) -> None:
        now = time.monotonic()
        self._unclaimed[event.job_id] = (now, event)
        self._unclaimed.move_to_end(event.job_id)
        while self._unclaimed:
            oldest, _ = next(iter(self._unclaimed.values()))
            if len(self._unclaimed) <= MAX_UNCLAIMED_EVENTS and now - oldest < UNCLAIMED_EVENT_TTL:
                break
            self._unclaimed.popitem(last=False)

    def _resolve(self, future: FarsideFuture[Any], event: JobEvent) -> None:
        fetch = (
            event.result is None
            and event.result_size is not None
            and event.state is not JobState.CANCELLED
        )
        if not fetch:
            future._settle(outcome_of(event, event.result))
            return
        with self._lock:
            if self._fetcher is None:
                self._fetcher = concurrent.futures.ThreadPoolExecutor(
                    4, thread_name_prefix="farside-results"
                )
            fetcher = self._fetcher
        fetcher.submit(self._fetch_and_settle, future, event)

    def _fetch_and_settle(self, future: FarsideFuture[Any], event: JobEvent) -> None:
        deadline, backoff = time.monotonic() + RESULT_FETCH_GRACE, 0.2
        while True:
            try:
                data = self._api.get_bytes(f"/jobs/{event.job_id}/result")
            except NotFound:
                # an adopted failed job that left no outcome (its pilot was lost): the
                # event's reason tells why
                future._settle(outcome_of(event, None))
                return
            except Exception as exc:
                if not self._closed and is_retryable(exc) and time.monotonic() < deadline:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                message = f"cannot fetch the result of job {event.job_id}: {exc}"
                future._settle(Outcome(error=TaskError(message, event.job_id)))
                return
            future._settle(outcome_of(event, data))
            return

    def close(self) -> None:
        """Fail the futures still waiting: their jobs go on, their results stay there."""
        self._closed = True
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            waiting = list(self._pending.values())
            self._pending.clear()
        for future in waiting:
            future._settle(
                Outcome(
                    error=FarsideError(
                        f"the Gateway was closed before job {future.job_id} ended; its result "
                        f"stays on the gateway (farside job {future.job_id})"
                    )
                )
            )
