"""The core of :class:`farside.Gateway`: a connection to one farside gateway (its jobs,
their futures and events, logs, sites and pilots), and the default one.

:class:`BaseGateway` is what the layers above need of a gateway: tasks, workflows, offloaded
graphs and Dask clusters take one. ``farside.Gateway`` (:mod:`._client`) builds on it and
adds them as shortcuts (``gw.submit``, ``gw.workflows``, ``gw.new_cluster``, ...).

The most recently created gateway becomes the *default* (as a ``distributed.Client``
does), which ``@farside.task`` functions use unless given ``gateway=``. If none exists when
a task is first submitted, one is created from the configuration (see :mod:`._config`).
Closing the default clears it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Self, overload

import httpx

from farside_protocol import FarsideError
from farside_protocol.models import (
    CancelRequest,
    CancelResponse,
    JobDetail,
    JobEvent,
    JobInfo,
    JobList,
    JobSpec,
    PilotInfo,
    RetryRequest,
    RetryResponse,
    SiteInfo,
    SiteStatusChange,
    SubmitRequest,
    SubmitResponse,
    WhoAmI,
)
from farside_protocol.states import JobState

from ._config import resolve_config
from ._events import EventListener
from ._futures import FarsideFuture
from ._http import Api
from ._journal import active_journal
from ._logs import cluster_lines, follow_logs, read_logs, stack_dump
from ._resolution import Results

log = logging.getLogger(__name__)

__all__ = ["BaseGateway", "get_gateway", "make_defaults_with"]

SUBMIT_CHUNK = 1000
_default: BaseGateway | None = None
_default_lock = threading.Lock()
#: what get_gateway makes when there is no default (see make_defaults_with)
_make_default: Callable[..., BaseGateway] | None = None


def make_defaults_with(factory: Callable[..., BaseGateway]) -> None:
    """Have :func:`get_gateway` make ``factory(set_as_default=False)``: ``farside.Gateway``
    names itself here, from the layer above, so that a default made for a task has the
    public class's shortcuts too."""
    global _make_default
    _make_default = factory


def get_gateway() -> BaseGateway:
    """The default gateway: the newest open one, else a new one from the configuration."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = (_make_default or BaseGateway)(set_as_default=False)
        return _default


class BaseGateway:
    """A connection to a farside gateway: its jobs and their futures, logs, sites and
    pilots. :class:`farside.Gateway` is this with its shortcuts to tasks, workflows,
    offloaded graphs and Dask clusters: make that one."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        set_as_default: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        global _default
        self.config = resolve_config(url, token)
        self._api = Api(self.config, transport)
        try:
            self.user = self._api.get("/whoami", WhoAmI)
        except BaseException:
            self._api.close()
            raise
        self.closed = False
        self._results = Results(self, self._api)
        self._listener = EventListener(self._api, self._results.on_events)
        if set_as_default:
            with _default_lock:
                _default = self

    @property
    def url(self) -> str:
        return self.config.url

    def __repr__(self) -> str:
        return f"<farside.Gateway {self.url} user={self.user.name!r}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the event stream and close connections; futures still waiting fail."""
        global _default
        if self.closed:
            return
        self.closed = True
        self._listener.close()
        self._results.close()
        self._api.close()
        with _default_lock:
            if _default is self:
                _default = None

    # -------------------------------------------------------------- submission

    def submit_jobs(
        self, specs: list[JobSpec], chunksize: int = SUBMIT_CHUNK
    ) -> list[FarsideFuture[Any]]:
        """Submit job specs in bulk requests of ``chunksize``; one future per job, in order.

        If a later request fails, the jobs already submitted by this call are cancelled.
        """
        if self.closed:
            raise FarsideError("this Gateway is closed; create a new farside.Gateway()")
        journal = active_journal(self.user.workflow_id)
        if journal is not None:  # inside a workflow body: the calls are journalled
            specs = journal.stamp(specs)
        self._listener.start()
        futures: list[FarsideFuture[Any]] = []
        try:
            for start in range(0, len(specs), max(1, chunksize)):
                chunk = specs[start : start + max(1, chunksize)]
                response = self._api.post("/jobs", SubmitRequest(jobs=chunk), SubmitResponse)
                if response.journalled:  # a workflow body's calls made before: may have ended
                    futures.extend(self._results.adopt(response.job_ids))
                else:
                    futures.extend(self._track(response.job_ids))
        except BaseException:
            if futures:
                with contextlib.suppress(FarsideError):
                    self.cancel(futures)
            raise
        return futures

    def future(self, job_id: int) -> FarsideFuture[Any]:
        """The future of a job submitted earlier, by this kernel or another (one that was
        restarted, a script, a colleague's map you may read): it settles from the stored
        outcome if the job has ended, else when it does."""
        return self._adopt([int(job_id)])[0]

    def _track(self, job_ids: list[int]) -> list[FarsideFuture[Any]]:
        return self._results.track(job_ids)

    def _adopt(self, job_ids: list[int]) -> list[FarsideFuture[Any]]:
        """Futures for jobs submitted earlier, perhaps elsewhere (they may have ended)."""
        self._listener.start()
        return self._results.adopt(job_ids)

    def _watch(self, job_ids: list[int], ended: Callable[[JobEvent], None]) -> None:
        self._results.watch(job_ids, ended)

    # -------------------------------------------------------------- queries

    def whoami(self) -> WhoAmI:
        """Who the gateway thinks this token belongs to."""
        return self._api.get("/whoami", WhoAmI)

    def jobs(
        self,
        state: JobState | str | None = None,
        group: str | None = None,
        limit: int | None = None,
        batch_id: str | None = None,
        kind: str | None = None,
    ) -> list[JobInfo]:
        """Your jobs, newest first, optionally of one ``state`` or ``group``, or those with
        an attempt on the pilot whose batch job is ``batch_id`` (as squeue, condor_q or
        kubectl name it). ``kind="function"`` leaves out the worker leases of Dask
        clusters (``kind="dask-worker"``: only those; their group is the cluster's name)."""
        params = {
            "state": str(state) if state else None,
            "group": group,
            "limit": limit,
            "batch_id": batch_id,
            "kind": kind,
        }
        return self._api.get("/jobs", JobList, params=params).jobs

    def job(self, job_id: int) -> JobDetail:
        """One job with its state history and attempts."""
        return self._api.get(f"/jobs/{int(job_id)}", JobDetail)

    def sites(self) -> list[SiteInfo]:
        return [SiteInfo.model_validate(s) for s in self._api.request("GET", "/sites").json()]

    def set_site_status(self, site: str, status: str, reason: str | None = None) -> SiteInfo:
        """Set a site ``online``, ``draining`` (no new work; held jobs finish) or ``offline``
        (its pilots are stopped and their jobs retried on other sites). Admins only."""
        change = SiteStatusChange(status=status, reason=reason)
        return self._api.put(f"/sites/{site}/status", change, SiteInfo)

    def pilots(self, all: bool = False) -> list[PilotInfo]:
        """Live pilots (``all=True``: the last 1,000 of any state), with their batch ids."""
        params = {"all": "true"} if all else None
        response = self._api.request("GET", "/pilots", params=params)
        return [PilotInfo.model_validate(p) for p in response.json()]

    def cancel(
        self,
        jobs: Iterable[int | FarsideFuture[Any]] | int | FarsideFuture[Any] = (),
        *,
        group: str | None = None,
    ) -> list[int]:
        """Cancel jobs (ids or futures) and/or a whole ``group``; returns the cancelled ids."""
        items = [jobs] if isinstance(jobs, int | FarsideFuture) else list(jobs)
        ids = [i.job_id if isinstance(i, FarsideFuture) else int(i) for i in items]
        if not ids and group is None:
            return []
        request = CancelRequest(job_ids=ids, group=group)
        return self._api.post("/jobs/cancel", request, CancelResponse).cancelled

    def retry(self, job: int | FarsideFuture[Any], **changes: Any) -> FarsideFuture[Any]:
        """Run a job's call again as a new job with ``changes`` (``cores``, ``memory``,
        ``walltime``, ``gpus``, ``sites``); a job that has not ended is cancelled first.
        Returns the new job's future.

        >>> fut = gw.retry(failed_job_id, memory="8 GiB", walltime="2 hours")  # doctest: +SKIP
        """
        job_id = job.job_id if isinstance(job, FarsideFuture) else int(job)
        self._listener.start()
        answer = self._api.post(f"/jobs/{job_id}/retry", RetryRequest(**changes), RetryResponse)
        (future,) = self._track([answer.job_id])
        return future

    def debug(self, job: int | FarsideFuture[Any], timeout: float = 30.0) -> list[str]:
        """The Python stacks of a running job's threads, now (PanDA's debug mode, live):
        the pilot signals the job's worker, which writes them to the job's log.

        >>> print("\\n".join(gw.debug(fut)))    # doctest: +SKIP
        Current thread 0x00007f... (most recent call first):
          File "/home/me/analysis.ipynb", line 12 in fit
        """
        job_id = job.job_id if isinstance(job, FarsideFuture) else int(job)
        return stack_dump(self._api, job_id, timeout)

    @overload
    def logs(
        self,
        job_id: int | None = None,
        follow: Literal[False] = False,
        since: int = 0,
        *,
        cluster: str | None = None,
    ) -> list[str]: ...
    @overload
    def logs(
        self,
        job_id: int | None,
        follow: Literal[True],
        since: int = 0,
        *,
        cluster: str | None = None,
    ) -> Iterator[str]: ...
    @overload
    def logs(
        self, job_id: int | None, follow: bool, since: int = 0, *, cluster: str | None = None
    ) -> list[str] | Iterator[str]: ...

    def logs(
        self,
        job_id: int | None = None,
        follow: bool = False,
        since: int = 0,
        *,
        cluster: str | None = None,
    ) -> list[str] | Iterator[str]:
        """The lines a job printed. ``follow=True`` yields them live until the job ends.
        ``cluster=name``: the lines of its Dask workers, each prefixed with the worker.

        >>> for line in gw.logs(fut.job_id, follow=True):  # doctest: +SKIP
        ...     print(line)
        squaring 3
        """
        if cluster is not None:
            if follow:
                raise ValueError("follow=True is for one job; follow a worker by its job_id")
            return cluster_lines(self._api, cluster)
        if job_id is None:
            raise TypeError("logs() needs a job_id (or cluster=...)")
        if follow:
            return follow_logs(self._api, int(job_id), since)
        return read_logs(self._api, int(job_id), since)
