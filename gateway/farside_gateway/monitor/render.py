"""The monitor's tables as HTML, from :mod:`.queries`' data (no Panel: testable alone).

Everything a user wrote (job names, groups, errors) is escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime

from farside_protocol import format_memory, format_walltime
from farside_protocol.models import JobDetail, SiteInfo
from farside_protocol.workflows import WorkflowInfo

from ..pool.fairshare import ShareRules
from .queries import ErrorGroup, GroupProgress, UserUsage

STATES = ("pending", "queued", "assigned", "running", "finished", "failed", "cancelled")


def _e(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def table(cls: str, header: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """An HTML table whose cells are already HTML; ``empty`` when there are no rows."""
    if not rows:
        return f"<p class='farside-empty'><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_walltime(max(1, round(seconds)))


def _bar(done: int, total: int) -> str:
    share = 100 * done / total if total else 0
    return (
        f"<progress max='{total}' value='{done}'></progress> "
        f"<span class='farside-done'>{done}/{total}</span> ({share:.0f}%)"
    )


def groups_table(groups: Sequence[GroupProgress], now: float, show_owner: bool) -> str:
    """Maps and other groups: progress, counts by state, rate, ETA."""
    rows = []
    for g in groups:
        counts = " ".join(
            f"<span class='farside-{s}'>{s}&nbsp;{g.counts[s]}</span>"
            for s in STATES
            if g.counts.get(s)
        )
        rate = g.rate(now)
        cells = [f"<b>{_e(g.group)}</b>", _e(g.kind), _bar(g.ended, g.total), counts]
        cells += [f"{rate:.2f}/s" if rate else "-", _duration(g.eta(now))]
        rows.append(([_e(g.owner)] if show_owner else []) + cells)
    header = ["group", "kind", "ended", "by state", "rate", "ETA"]
    return table("farside-groups", (["owner"] if show_owner else []) + header, rows, "no jobs yet")


def workflows_table(runs: Sequence[WorkflowInfo]) -> str:
    rows = []
    for r in runs:
        calls = " ".join(f"{s}&nbsp;{n}" for s, n in sorted(r.children.items()))
        report = _e(json.dumps(r.report)[:200]) if r.report else "-"
        cells = [str(r.id), f"<b>{_e(r.name)}</b>", _e(r.owner), _e(r.state.value)]
        rows.append([*cells, calls or "-", str(r.body_runs), report])
    header = ["run", "workflow", "owner", "state", "calls", "body runs", "report"]
    return table("farside-workflows", header, rows, "no workflow runs")


def clusters_table(live: Sequence[tuple[str, str, str]]) -> str:
    rows = [[f"<b>{_e(name)}</b>", _e(owner), _e(state)] for name, owner, state in live]
    return table("farside-clusters", ["cluster", "owner", "state"], rows, "no Dask clusters")


def errors_table(errors: Sequence[ErrorGroup]) -> str:
    rows = [
        [
            _e(g.error_class),
            f"<code>{_e(g.reason)}</code>",
            _e(g.site),
            str(g.count),
            _duration(g.wall_time_lost) if g.wall_time_lost else "-",
            ", ".join(f"<a href='?job={j}' target='_self'>{j}</a>" for j in g.sample_jobs),
        ]
        for g in errors
    ]
    header = ["class", "reason", "site", "failures", "wall time lost", "sample jobs"]
    return table("farside-errors", header, rows, "no failures in this window")


def sites_table(sites: Sequence[SiteInfo], queued: dict[str, int]) -> str:
    rows = []
    for s in sites:
        pilots = " ".join(f"{state}&nbsp;{n}" for state, n in sorted(s.pilots.items())) or "-"
        health = "healthy" if s.healthy else "<b class='farside-failed'>unhealthy</b>"
        note = s.last_error or s.status_reason
        cells = [f"<b>{_e(s.name)}</b>", _e(s.kind), _e(s.status), health, pilots]
        cells += [str(queued.get(s.name, 0)), f"{s.min_warm} / {s.max_pilots}", _e(note)]
        rows.append(cells)
    header = ["site", "plugin", "status", "health", "pilots", "queued for it", "warm / max"]
    return table("farside-sites", [*header, "last error / note"], rows, "no sites")


def users_table(users: Sequence[UserUsage], rules: ShareRules) -> str:
    """Usage against fair share: each group's configured share (split among its users
    with queued work) and the per-user caps."""
    caps = " / ".join(
        f"{rules.max_jobs} jobs" if what == "jobs" else f"{rules.max_cores} cores"
        for what, limit in (("jobs", rules.max_jobs), ("cores", rules.max_cores))
        if limit is not None
    )
    rows = []
    for u in users:
        share = rules.groups.get(u.share_group or "", rules.default_share)
        cells = [f"<b>{_e(u.owner)}</b>", _e(u.share_group), f"{share:g}"]
        cells += [str(u.running_cores), str(u.running_jobs), str(u.queued_jobs), caps or "none"]
        rows.append(cells)
    header = ["user", "fair-share group", "share", "cores in use", "running", "queued", "caps"]
    return table("farside-users", header, rows, "nobody has work in the pool")


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def job_header(job: JobDetail) -> str:
    r = job.resources
    fields = [
        ("job", f"{job.id} <b>{_e(job.name)}</b> ({_e(job.kind)})"),
        ("owner", _e(job.owner)),
        ("state", f"<span class='farside-state'>{_e(job.state.value)}</span>"),
        ("group", _e(job.group)),
        ("site", _e(job.site)),
        (
            "resources",
            f"{r.cores} cores, {format_memory(r.memory)}, {r.gpus} GPUs, "
            f"walltime {format_walltime(r.walltime)}",
        ),
        ("created / ended", f"{_when(job.created)} / {_when(job.ended)}"),
        (
            "error",
            f"{_e(job.error_class.value if job.error_class else None)}: {_e(job.error)}"
            if job.error
            else "-",
        ),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in fields)
    return f"<table class='farside-job'>{rows}</table>"


def history_table(job: JobDetail) -> str:
    rows = [[_when(h.time), _e(h.state.value), str(h.attempt), _e(h.reason)] for h in job.history]
    return table("farside-history", ["time", "state", "attempt", "reason"], rows, "no history")


def attempts_table(job: JobDetail) -> str:
    rows = []
    for a in job.attempt_list:
        gpu = "-"
        if a.gpu_memory is not None or a.gpu_utilization is not None:
            memory = format_memory(a.gpu_memory) if a.gpu_memory is not None else "?"
            share = f", {a.gpu_utilization:.0f}%" if a.gpu_utilization is not None else ""
            gpu = memory + share
        rows.append(
            [
                str(a.number),
                _e(a.state.value),
                _e(a.site),
                _e(a.pilot_id),
                _e(a.batch_id),
                _e(a.error_class.value if a.error_class else None),
                _e(a.error),
                _duration(a.wall_time),
                _duration(a.cpu_time),
                format_memory(a.max_rss) if a.max_rss else "-",
                gpu,
            ]
        )
    header = [
        "#",
        "state",
        "site",
        "pilot",
        "batch id",
        "error class",
        "error",
        "wall",
        "CPU",
        "peak RSS",
        "GPU",
    ]
    return table("farside-attempts", header, rows, "not started yet")


def log_html(lines: Sequence[tuple[int, str, str]]) -> str:
    """The log's end, stderr in red, the pilot's own notes in grey."""
    if not lines:
        return "<p class='farside-empty'><i>no output yet</i></p>"
    colour = {"stderr": "#b00", "system": "#777"}
    body = "".join(
        f"<span style='color:{colour.get(stream, 'inherit')}'>{_e(text)}</span>\n"
        for _, stream, text in lines
    )
    return f"<pre class='farside-log' style='max-height:32em;overflow:auto'>{body}</pre>"
