""":class:`LogView`: a live, bounded log pane for a job, a map, or any set of jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets  # type: ignore[import-untyped,unused-ignore]

from .._futures import FarsideFuture, MapResult
from .._gateway import get_gateway
from ._cells import close_with_cell
from ._follow import LogFollowers
from ._html import LogEntry, log_html, title_html
from ._live import Painter

if TYPE_CHECKING:
    from .._cluster import FarsideCluster
    from .._gateway import BaseGateway

__all__ = ["LogView"]


class LogView(widgets.VBox):  # type: ignore[misc,unused-ignore]
    """The lines a job or a map prints, live, stderr in red, the newest ``max_lines`` kept.

    ``job`` is a job id or a future; ``group`` a map's group name or its
    :class:`MapResult`. Lines of a map are prefixed with their job id. The logs are
    followed on background threads (at most ``max_streams`` jobs at once, in job order), so
    the kernel stays free; the pane says ``ended`` when every job has ended.

    >>> LogView(gw, job=fut)                 # doctest: +SKIP
    >>> LogView(gw, group=results)           # a map: every job's lines  # doctest: +SKIP
    >>> LogView(gw, cluster=cluster)         # a Dask cluster's workers  # doctest: +SKIP

    :meth:`for_jobs` follows any set of jobs that a callable names, asked again as it
    grows (the workers of a Dask cluster, say).
    """

    def __init__(
        self,
        gw: BaseGateway | None = None,
        *,
        job: int | FarsideFuture[Any] | None = None,
        group: str | MapResult[Any] | None = None,
        cluster: str | FarsideCluster | None = None,
        max_lines: int = 500,
        max_streams: int = 8,
        height: str = "20em",
        **options: Any,
    ) -> None:
        gw = gw or get_gateway()
        if sum(x is not None for x in (job, group, cluster)) != 1:
            raise TypeError("LogView needs exactly one of job=, group= or cluster=")
        job_ids: Callable[[], Iterable[int]]
        if cluster is not None:
            # a cluster's workers are the worker leases of its group (a map may share the
            # name: its tasks are not workers), and new ones come as it scales
            name = cluster if isinstance(cluster, str) else cluster.name

            def workers() -> list[int]:
                return [j.id for j in gw.jobs(group=name, kind="dask-worker", limit=10_000)]

            self._setup(
                gw,
                workers,
                f"cluster {name}",
                True,
                max_lines,
                max_streams,
                height,
                stop_when_ended=False,
                **options,
            )
            return
        if job is not None:
            job_id = job.job_id if isinstance(job, FarsideFuture) else int(job)
            title, job_ids, multi = f"job {job_id}", lambda: [job_id], False
        elif isinstance(group, MapResult):
            fixed = group.job_ids
            title, job_ids, multi = f"map {group.group}", lambda: fixed, True
        else:
            name = str(group)
            title, multi = f"map {name}", True

            def job_ids() -> list[int]:
                return [j.id for j in gw.jobs(group=name, limit=10_000)]

        self._setup(gw, job_ids, title, multi, max_lines, max_streams, height, **options)

    @classmethod
    def for_jobs(
        cls,
        gw: BaseGateway,
        job_ids: Callable[[], Iterable[int]],
        *,
        title: str,
        stop_when_ended: bool = False,
        refresh: float = 2.0,
        max_lines: int = 500,
        max_streams: int = 8,
        height: str = "20em",
    ) -> LogView:
        """Follow the jobs ``job_ids()`` names, asking it again every ``refresh`` seconds.

        For sets that change: a cluster's worker jobs (``lambda: [j.id for j in
        gw.jobs(group=cluster_group)]``). With ``stop_when_ended`` the view ends once every
        job named has ended and no new one appeared.

        >>> LogView.for_jobs(gw, lambda: [j.id for j in gw.jobs(group="dask-abc")],
        ...                  title="cluster dask-abc")           # doctest: +SKIP
        """
        view = cls.__new__(cls)
        view._setup(
            gw,
            job_ids,
            title,
            True,
            max_lines,
            max_streams,
            height,
            stop_when_ended=stop_when_ended,
            refresh=refresh,
        )
        return view

    def _setup(
        self,
        gw: BaseGateway,
        job_ids: Callable[[], Iterable[int]],
        title: str,
        multi: bool,
        max_lines: int,
        max_streams: int,
        height: str,
        *,
        stop_when_ended: bool = True,
        refresh: float = 2.0,
        interval: float = 0.25,
    ) -> None:
        self.gateway = gw
        self.title = title
        self._multi, self._height = multi, height
        self._header = widgets.HTML(title_html(f"log of {title}", "starting…"))
        self._pane = widgets.HTML(log_html([], show_job=multi, dropped=0, height=height))
        widgets.VBox.__init__(self, [self._header, self._pane])
        self.add_class("farside-logview")
        self._painter = Painter(self._paint, interval, "farside-logview")
        self._followers = LogFollowers(
            gw._api,
            job_ids,
            self._painter.poke,
            max_lines=max_lines,
            max_streams=max_streams,
            refresh=refresh,
            stop_when_ended=stop_when_ended,
        )
        self._painter.start()
        self._followers.start()
        close_with_cell(self)

    # ------------------------------------------------------------------ public

    @property
    def lines(self) -> list[LogEntry]:
        """The lines shown (job id, stream, text), oldest first."""
        return self._followers.lines()[0]

    @property
    def ended(self) -> bool:
        """Every job followed has ended (and, for a changing set, no new one appeared)."""
        return self._followers.done

    def close(self) -> None:
        """Stop following and remove the widget."""
        if hasattr(self, "_followers"):  # also called by __del__ after a failed __init__
            self._followers.close()
            self._painter.stop()
        super().close()

    # --------------------------------------------------------------- the thread

    def _paint(self) -> float | None:
        # ``done`` first: lines read after it was true are the last ones, so the final
        # paint shows them all (read the other way round, lines added just before the
        # followers ended could be missed, and painting stops)
        done = self._followers.done
        lines, dropped = self._followers.lines()
        known, following, ended = self._followers.jobs()
        if done:
            status = f"ended · {ended} jobs" if self._multi else "ended"
        elif self._multi:
            status = f"{known} jobs: {following} followed, {ended} ended"
        else:
            status = "following"
        error = self._followers.error
        self._header.value = title_html(
            f"log of {self.title}", f"{status}; {error}" if error else status, error=bool(error)
        )
        self._pane.value = log_html(
            lines, show_job=self._multi, dropped=dropped, height=self._height
        )
        if done:
            self._painter.stop()
        return None
