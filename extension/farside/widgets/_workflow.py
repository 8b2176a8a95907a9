"""``WorkflowMonitor``: a workflow run in the notebook, live.

The run's state, how often its body has run, its children by state, and what the body
last reported (``farside.report(iteration=..., best=...)``): iterations, points, best so
far. It asks the gateway every couple of seconds on its own thread, until the run ends.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from farside_protocol.workflows import WorkflowInfo

from ._live import Painter

if TYPE_CHECKING:
    from .._workflow import WorkflowRun

REFRESH_SECONDS = 2.0
ORDER = ("pending", "queued", "assigned", "running", "finished", "failed", "cancelled")


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return html.escape(text if len(text) <= 200 else text[:199] + "…")


def workflow_html(info: WorkflowInfo) -> str:
    """A run as HTML: headline, children by state, and the body's report as a table."""
    runs = f" · body run {info.body_runs}" if info.body_runs > 1 else ""
    lost = f" · attempt {info.attempts}" if info.attempts > 1 else ""
    error = f"<br><i>{html.escape(info.error)}</i>" if info.error else ""
    children = " · ".join(
        f"<span class='farside-{s}'>{s} {info.children[s]}</span>"
        for s in ORDER
        if info.children.get(s)
    )
    rows = "".join(
        f"<tr><td><b>{html.escape(str(k))}</b></td><td>{_value(v)}</td></tr>"
        for k, v in info.report.items()
    )
    report = f"<table class='farside-report'>{rows}</table>" if rows else ""
    return (
        f"<b>workflow {html.escape(info.name)}</b> (run {info.id}) — "
        f"<span class='farside-state'>{info.state}</span>{runs}{lost}{error}<br>"
        f"calls: {children or '<i>none yet</i>'}{report}"
    )


class WorkflowMonitor(widgets.HTML):  # type: ignore[misc]
    """A live view of one workflow run; ``close()`` stops its refreshing."""

    def __init__(self, run: WorkflowRun[Any], interval: float = REFRESH_SECONDS) -> None:
        super().__init__()
        self.add_class("farside-workflow-monitor")
        self.run = run
        self.interval = interval
        self.info: WorkflowInfo | None = None
        self._painter = Painter(self._paint, 0.2, f"farside-workflow-{run.id}")
        self._painter.start()

    def _paint(self) -> float | None:
        self.info = self.run.progress()
        self.value = workflow_html(self.info)
        if self.info.state.terminal:
            return None
        return self.interval

    def close(self) -> None:
        self._painter.stop()
        super().close()
