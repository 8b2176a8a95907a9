""":class:`JobMonitor`: a user's jobs and maps by state, live from the event stream."""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets  # type: ignore[import-untyped,unused-ignore]

from farside_protocol.models import JobEvent, JobList

from .._events import EventListener
from .._futures import MapResult
from .._gateway import get_gateway
from ._board import Failure, GroupCounts, JobBoard
from ._cells import close_with_cell
from ._html import counts_html, failures_html, title_html
from ._live import Painter

if TYPE_CHECKING:
    from .._gateway import BaseGateway

__all__ = ["JobMonitor"]

LOOKUP_PAGE = 10_000  # the most jobs GET /jobs lists at once
RETRY = 2.0  # seconds before a failed connection or look-up is tried again
QUIET = 5.0  # seconds between redraws without events (the clock in the title, a closed Gateway)


class _GroupRow(widgets.HBox):  # type: ignore[misc,unused-ignore]
    """One map: its name, a progress bar of ended jobs, and the counts per state."""

    def __init__(self, group: str | None, kind: str = "function") -> None:
        label = f"<code>{escape(group)}</code>" if group is not None else "<i>single jobs</i>"
        if kind == "dask-worker":  # a Dask cluster's worker leases, not a map of tasks
            label = f"cluster {label}"
        self.label = widgets.HTML(label, layout=widgets.Layout(width="13em", overflow="hidden"))
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="10em"))
        self.counts = widgets.HTML(layout=widgets.Layout(width="auto", flex="1 1 auto"))
        super().__init__([self.label, self.bar, self.counts])
        self.add_class("farside-group")
        self.group = group

    def update(self, g: GroupCounts) -> None:
        self.bar.max = max(1, g.total)
        self.bar.value = g.ended
        failed = g.counts["failed"] > 0
        done = g.total > 0 and g.ended == g.total
        self.bar.bar_style = "danger" if failed else "success" if done else "info"
        fraction = f'<b title="jobs ended / jobs">{g.ended}/{g.total}</b> &nbsp;'
        self.counts.value = fraction + counts_html(g.counts)


class JobMonitor(widgets.VBox):  # type: ignore[misc,unused-ignore]
    """Your jobs and maps by state, with progress bars and failures, updating live.

    Display it as a cell's last expression. It lists the newest ``limit`` jobs once
    (``GET /jobs``), then follows the gateway's event stream on a background thread, so the
    kernel stays free. A map (the jobs of one ``group``) is one row: a bar of the jobs that
    ended and counts per state (pending, queued, running, finished, failed, cancelled);
    failed jobs are listed with their reasons. ``group`` (a name or a :class:`MapResult`)
    shows one map only.

    >>> monitor = JobMonitor(gw)                         # doctest: +SKIP
    >>> monitor                                          # doctest: +SKIP
    >>> monitor.counts(results.group)["finished"]        # doctest: +SKIP
    100
    >>> monitor.close()                                  # doctest: +SKIP
    """

    def __init__(
        self,
        gw: BaseGateway | None = None,
        *,
        group: str | MapResult[Any] | None = None,
        limit: int = 1000,
        max_groups: int = 10,
        max_failures: int = 20,
        interval: float = 0.25,
    ) -> None:
        self.gateway = gw or get_gateway()
        self.group = group.group if isinstance(group, MapResult) else group
        self._limit, self._max_groups, self._max_failures = limit, max_groups, max_failures
        self._board = JobBoard(self.gateway.user.name, self.group)
        self._title = widgets.HTML(title_html(self._title_text(), "connecting…"))
        self._rows_box = widgets.VBox()
        self._failures = widgets.HTML()
        self._rows: dict[str | None, _GroupRow] = {}
        self._connected = False
        self._error: str | None = None
        # the gateway's own listener hears only final states; a monitor wants every change
        self._listener = EventListener(self.gateway._api, self._on_events, terminal_only=False)
        super().__init__([self._title, self._rows_box, self._failures])
        self.add_class("farside-monitor")
        self._painter = Painter(self._paint, interval, "farside-monitor")
        self._painter.start()
        close_with_cell(self)

    def _title_text(self) -> str:
        scope = f"map {self.group}" if self.group else "jobs"
        return f"farside {scope} of {self.gateway.user.name}"

    # ------------------------------------------------------------------ public

    def counts(self, group: str | None = None) -> dict[str, int]:
        """Jobs per state, of one ``group`` or (default) of all shown jobs."""
        return self._board.counts(group)

    @property
    def failures(self) -> list[Failure]:
        """Failed jobs with their reasons, newest first."""
        return self._board.failures()

    @property
    def live(self) -> bool:
        """Whether the monitor has its snapshot and the event stream is open."""
        return self._connected and self._listener.last_error is None

    def close(self) -> None:
        """Stop following the gateway and remove the widget."""
        if hasattr(self, "_painter"):  # also called by __del__ after a failed __init__
            self._painter.stop()
            self._listener.close()
            for row in self._rows.values():
                row.close()
        super().close()

    # --------------------------------------------------------------- the thread

    def _on_events(self, events: list[JobEvent]) -> None:
        self._board.apply_events(events)
        self._painter.poke()

    def _paint(self) -> float | None:
        if self.gateway.closed:
            self._title.value = title_html(self._title_text(), "the Gateway was closed", error=True)
            self._listener.close()
            self._painter.stop()
            return None
        if not self._connected and not self._connect():
            self._draw()
            return RETRY
        self._error = None
        self._look_up(self._board.pending_lookups())
        self._draw()
        return RETRY if self._error else QUIET

    def _connect(self) -> bool:
        """Open the stream, then list the jobs: what changes after the list comes as events."""
        try:
            self._listener.start(timeout=30.0)
            jobs = self.gateway.jobs(group=self.group, limit=self._limit)
        except Exception as exc:
            self._error = str(exc)
            return False
        self._board.apply_snapshot(jobs)
        self._connected = True
        return True

    def _look_up(self, ids: set[int]) -> None:
        """Tell the groups of jobs first seen in events: pages of ``GET /jobs`` by id range,
        newest first, one request for a whole new map."""
        while ids:
            top, bottom = max(ids) + 1, min(ids)
            params = {"before_id": top, "limit": min(LOOKUP_PAGE, top - bottom)}
            try:
                page = self.gateway._api.get("/jobs", JobList, params=params).jobs
            except Exception as exc:
                self._error = f"cannot look up new jobs: {exc}"
                return
            asked = {i for i in ids if i >= (page[-1].id if page else bottom)}
            self._board.apply_lookup(asked, page)
            ids -= asked

    def _draw(self) -> None:
        groups = self._board.groups()
        shown = groups[: self._max_groups]
        for g in shown:
            row = self._rows.get(g.group)
            if row is None:
                row = self._rows[g.group] = _GroupRow(g.group, g.kind)
            row.update(g)
        children = tuple(self._rows[g.group] for g in shown)
        if self._rows_box.children != children:
            self._rows_box.children = children
        total = self._board.counts()
        jobs = sum(total.values())
        hidden = len(groups) - len(shown)
        status = f"{jobs} jobs, {total['running']} running"
        if hidden:
            status += f", {hidden} older maps not shown"
        stream_error = self._listener.last_error
        error = self._error or (str(stream_error) if stream_error else None)
        if error:
            status = f"{status}; reconnecting ({error})"
        elif self._connected:
            status += f" · live {time.strftime('%H:%M:%S')}"
        self._title.value = title_html(self._title_text(), status, error=bool(error))
        self._failures.value = failures_html(
            self._board.failures(self._max_failures), self._board.failure_count()
        )
