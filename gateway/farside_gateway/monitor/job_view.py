"""The monitor's drill-down to one job: what happened to it, its log's end, its memory and
CPU over time, and the commands a user has from the client and the CLI (kill, retry with
more memory or walltime, a live stack dump), through the same pool functions as the API.
"""

from __future__ import annotations

import html
import itertools
from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, LinearAxis, Range1d
from bokeh.plotting import figure

from farside_protocol import FarsideError, Resources, format_memory
from farside_protocol.models import RetryRequest

from ..auth.tokens import Principal
from ..broker.match import check_runnable
from ..pool.leases import request_debug
from ..pool.resubmit import retry_job, retry_spec
from ..pool.submit import Submitter, cancel_jobs
from ..runtime import Runtime
from . import render
from .queries import JobView, job_view

MIB = 1024**2


def usage_figure(view: JobView) -> Any:
    """RSS (MiB, left axis) and CPU in use (cores, right axis) over each attempt's life."""
    plot = figure(
        height=260,
        sizing_mode="stretch_width",
        x_axis_label="seconds since start",
        y_axis_label="RSS (MiB)",
        toolbar_location=None,
    )
    top_rss, top_cpu = 1.0, 1.0
    rss_range = plot.y_range = Range1d(start=0, end=1)
    cpu_range = Range1d(start=0, end=1)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    plot.extra_y_ranges = {"cpu": cpu_range}
    plot.add_layout(LinearAxis(y_range_name="cpu", axis_label="CPU (cores)"), "right")
    for n, (attempt, points) in enumerate(sorted(view.usage.items())):
        t = [p[0] for p in points]
        rss = [p[1] / MIB for p in points]
        # cores in use between samples: CPU seconds over wall seconds
        cores = [0.0] + [
            max(0.0, (b[2] - a[2]) / max(b[0] - a[0], 1e-3)) for a, b in itertools.pairwise(points)
        ]
        colour = palette[n % len(palette)]
        source = ColumnDataSource({"t": t, "rss": rss, "cores": cores})
        plot.line("t", "rss", source=source, color=colour, legend_label=f"RSS, attempt {attempt}")
        plot.line(
            "t",
            "cores",
            source=source,
            color=colour,
            line_dash="dashed",
            y_range_name="cpu",
            legend_label=f"CPU, attempt {attempt}",
        )
        top_rss, top_cpu = max(top_rss, *rss), max(top_cpu, *cores)
    rss_range.end = top_rss * 1.1
    cpu_range.end = top_cpu * 1.1
    if view.usage:
        plot.legend.location = "top_left"
    return plot


class JobPanel:
    """The drill-down tab: a job id, then the job; redrawn by the page's ticks."""

    def __init__(self, rt: Runtime, who: Principal) -> None:
        self.rt = rt
        self.who = who
        self.job_id: int | None = None
        self.chooser = pn.widgets.IntInput(name="job id", value=None, width=160)
        self.chooser.param.watch(self._chosen, "value")
        self.header = pn.pane.HTML(css_classes=["farside-jobhead"])
        self.history = pn.pane.HTML()
        self.attempts = pn.pane.HTML(css_classes=["farside-attempts-pane"])
        self.plot = pn.pane.Bokeh(visible=False)
        self.log = pn.pane.HTML(css_classes=["farside-logpane"])
        self.message = pn.pane.HTML(css_classes=["farside-message"])
        self.memory = pn.widgets.TextInput(name="memory", placeholder="e.g. 8 GiB", width=120)
        self.walltime = pn.widgets.TextInput(name="walltime", placeholder="e.g. 2h", width=120)
        self.site = pn.widgets.TextInput(name="site", placeholder="any", width=120)
        kill = pn.widgets.Button(name="Kill", button_type="danger", width=90)
        retry = pn.widgets.Button(name="Retry", button_type="primary", width=90)
        dump = pn.widgets.Button(name="Stack dump", width=110)
        # Panel awaits coroutine callbacks on the server's loop
        kill.on_click(self.kill)
        retry.on_click(self.retry)
        dump.on_click(self.dump)
        commands = pn.Row(kill, self.memory, self.walltime, self.site, retry, dump, align="end")
        self.layout = pn.Column(
            pn.Row(self.chooser, commands),
            self.message,
            self.header,
            "#### History",
            self.history,
            "#### Attempts",
            self.attempts,
            self.plot,
            "#### Output (the end)",
            self.log,
        )
        self._usage_drawn: dict[int, int] = {}

    async def _chosen(self, event: Any) -> None:
        self.job_id = event.new
        self._usage_drawn = {}
        await self.redraw()

    async def redraw(self) -> None:
        if self.job_id is None:
            return
        try:
            view = await self.rt.db.read(job_view, self.job_id, self.who.owner_filter)
        except FarsideError as exc:
            self.header.object = f"<p><i>{html.escape(str(exc))}</i></p>"
            for pane in (self.history, self.attempts, self.log):
                pane.object = ""
            self.plot.visible = False
            return
        self.header.object = render.job_header(view.detail)
        self.history.object = render.history_table(view.detail)
        self.attempts.object = render.attempts_table(view.detail)
        self.log.object = render.log_html(view.log_tail)
        drawn = {a: len(points) for a, points in view.usage.items()}
        if drawn != self._usage_drawn:  # a new series came with an attempt's end
            self._usage_drawn = drawn
            self.plot.object = usage_figure(view)
            self.plot.visible = bool(view.usage)

    async def kill(self, _: object = None) -> None:
        job_id = self.job_id
        if job_id is None:
            return
        owner = self.who.owner_filter
        ids = await self.rt.pool.write(lambda tx: cancel_jobs(tx, owner, [job_id], None))
        self.message.object = f"<p>cancelled: {ids or 'nothing (it had ended)'}</p>"
        await self.redraw()

    async def retry(self, _: object = None) -> None:
        job_id = self.job_id
        if job_id is None:
            return
        try:
            change = RetryRequest(
                # what is typed, whether or not Enter was pressed
                memory=self.memory.value_input or None,
                walltime=self.walltime.value_input or None,
                sites=[self.site.value_input] if self.site.value_input else None,
            )
            new, owner, group = await self.rt.db.read(
                retry_spec, job_id, self.who.owner_filter, change
            )
            check_runnable(self.rt.config.sites, [new.spec])
            scouts = self.rt.config.scouts
            submitter = Submitter(owner, group, scouts.threshold, scouts.count)
            new_id, _ = await self.rt.pool.write(
                lambda tx: retry_job(tx, job_id, self.who.owner_filter, submitter, new)
            )
        except (FarsideError, ValueError) as exc:
            self.message.object = f"<p class='farside-failed'>{html.escape(str(exc))}</p>"
            return
        resources: Resources = new.spec.resources
        self.message.object = (
            f"<p>retried as job <a href='?job={new_id}' target='_self'>{new_id}</a> "
            f"({format_memory(resources.memory)})</p>"
        )
        self.chooser.value = new_id

    async def dump(self, _: object = None) -> None:
        job_id = self.job_id
        if job_id is None:
            return
        try:
            await self.rt.pool.write(lambda tx: request_debug(tx, job_id, self.who.owner_filter))
        except FarsideError as exc:
            self.message.object = f"<p class='farside-failed'>{html.escape(str(exc))}</p>"
            return
        self.message.object = "<p>stack dump asked for: it appears in the output below</p>"
