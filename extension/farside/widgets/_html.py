"""HTML fragments of the widgets: counts per state, failures, log lines, a status line.

Every text that came from a job or the gateway is escaped. Elements carry ``farside-*``
classes and ``data-*`` attributes, so tests (and users' CSS) can find them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from ._board import SHOWN_STATES, Failure

__all__ = ["STATE_COLOURS", "LogEntry", "counts_html", "failures_html", "log_html", "title_html"]

STATE_COLOURS = {
    "pending": "#9e9e9e",
    "queued": "#f0a020",
    "running": "#1e88e5",
    "finished": "#43a047",
    "failed": "#e53935",
    "cancelled": "#616161",
}
STREAM_STYLES = {
    "stdout": "",
    "stderr": "color:#c62828",
    "system": "color:#757575;font-style:italic",
}
MAX_REASON = 300


@dataclass(frozen=True)
class LogEntry:
    """One shown log line: which job printed it, on which stream, what."""

    job_id: int
    stream: str
    text: str


def title_html(title: str, status: str, *, error: bool = False) -> str:
    colour = "#c62828" if error else "#757575"
    return (
        f"<b>{escape(title)}</b> "
        f'<span class="farside-status" style="color:{colour}">{escape(status)}</span>'
    )


def counts_html(counts: Mapping[str, int]) -> str:
    """``finished 3 · running 2 …`` with a coloured dot per state; zero counts are dimmed."""
    total = sum(counts.get(s, 0) for s in SHOWN_STATES)
    parts = []
    for state in SHOWN_STATES:
        n = counts.get(state, 0)
        opacity = "1" if n else "0.45"
        parts.append(
            f'<span class="farside-count" data-state="{state}" data-count="{n}" '
            f'style="margin-right:0.6em;white-space:nowrap;opacity:{opacity}">'
            f'<span style="color:{STATE_COLOURS[state]}">&#9679;</span> {state} {n}</span>'
        )
    return f'<span class="farside-counts" data-total="{total}">{"".join(parts)}</span>'


def failures_html(failures: Iterable[Failure], total: int) -> str:
    items = []
    for f in failures:
        where = f"{f.group} / " if f.group else ""
        reason = f.reason if len(f.reason) <= MAX_REASON else f.reason[:MAX_REASON] + "…"
        items.append(
            f'<li class="farside-failure" data-job="{f.job_id}">'
            f"<b>job {f.job_id}</b> <span style='color:#757575'>{escape(where)}"
            f"{escape(f.name or '')}</span>: <code>{escape(reason)}</code></li>"
        )
    if not items:
        return ""
    more = total - len(items)
    tail = f"<li>… and {more} more (<code>gw.jobs(state='failed')</code>)</li>" if more else ""
    return (
        f'<div class="farside-failures"><b style="color:{STATE_COLOURS["failed"]}">'
        f"{total} failed</b><ul style='margin:0.2em 0'>{''.join(items)}{tail}</ul></div>"
    )


def log_html(entries: Iterable[LogEntry], *, show_job: bool, dropped: int, height: str) -> str:
    """A scrolled pane that stays at its newest line: a ``column-reverse`` flex box keeps
    its scroll position at the bottom without any script."""
    lines = []
    for e in entries:
        prefix = f'<span style="color:#9e9e9e">[{e.job_id}]</span> ' if show_job else ""
        lines.append(
            f'<div class="farside-line farside-{e.stream}" data-job="{e.job_id}" '
            f'style="{STREAM_STYLES.get(e.stream, "")}">{prefix}{escape(e.text)}</div>'
        )
    if dropped:
        lines.insert(0, f'<div style="color:#9e9e9e">… {dropped} earlier lines not shown</div>')
    body = "".join(lines) or '<div style="color:#9e9e9e">no output yet</div>'
    return (
        f'<div class="farside-log" style="height:{escape(height)};overflow-y:auto;'
        "display:flex;flex-direction:column-reverse;border:1px solid #e0e0e0;padding:4px;"
        'font-family:monospace;font-size:12px;line-height:1.35;white-space:pre-wrap">'
        f"<div>{body}</div></div>"
    )
