"""``ClusterWidget``: a farside cluster in the notebook.

What the gateway knows (worker leases by site and state, each group's target, why workers
ended) above Dask's own cluster widget (the scheduler's view, and the scale and adapt
controls). It refreshes itself from the gateway every couple of seconds while the
cluster runs; the refresh runs on the cluster's event loop, off the kernel's thread.
"""

from __future__ import annotations

import asyncio
import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from tornado.ioloop import PeriodicCallback

from farside_protocol.clusters import ClusterInfo

if TYPE_CHECKING:
    from ._cluster import FarsideCluster

REFRESH_SECONDS = 2.0
STATES = ("pending", "queued", "assigned", "running", "finished", "failed", "cancelled")


def workers_table(info: ClusterInfo) -> str:
    """Worker leases as an HTML table: a row per site, a column per state seen."""
    from ._cluster import lease_counts  # imports distributed: only when a cluster is shown

    counts = lease_counts(info, waiting="(waiting)")
    states = [s for s in STATES if any(state == s for _, state in counts)]
    if not counts:
        return "<p><i>no workers asked for yet: cluster.scale(n)</i></p>"
    head = "".join(f"<th>{s}</th>" for s in states)
    rows = []
    for site in sorted({site for site, _ in counts}):
        cells = "".join(f"<td>{counts.get((site, s), 0)}</td>" for s in states)
        rows.append(f"<tr><td><b>{html.escape(site)}</b></td>{cells}</tr>")
    return (
        "<table class='farside-workers'><thead><tr><th>site</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def summary(info: ClusterInfo, connected: int, dashboard: str | None = None) -> str:
    """The cluster's headline: state, groups with targets, Dask workers connected, and a
    link to ``dashboard`` (the cluster's link with its browser ticket) while there is one."""
    groups = ", ".join(
        f"{html.escape(g.name)}: {g.spec.workers} workers of {g.spec.cores} cores"
        + (f" + {g.spec.gpus} GPU" if g.spec.gpus else "")
        + (f" ({g.failures} failed)" if g.failures else "")
        for g in info.groups
    )
    link = (
        f" · <a href='{html.escape(dashboard)}' target='_blank'>dashboard</a>"
        if dashboard and info.dashboard_link
        else ""
    )
    reason = f"<br><i>{html.escape(info.reason)}</i>" if info.reason else ""
    failed = [w for w in info.workers if w.state.value == "failed" and w.error]
    last = (
        f"<br>last worker failure ({html.escape(failed[0].name)}): "
        f"<code>{html.escape(failed[0].error or '')[:300]}</code>"
        if failed
        else ""
    )
    return (
        f"<b>farside cluster {html.escape(info.name)}</b> — <span class='farside-state'>"
        f"{info.state}</span> · <span class='farside-connected'>{connected}</span> Dask "
        f"workers connected{link}<br>groups: {groups}{reason}{last}"
    )


class ClusterWidget(widgets.VBox):  # type: ignore[misc]
    """The farside view of a cluster above Dask's cluster widget (status, scale, adapt)."""

    def __init__(self, cluster: FarsideCluster, dask_widget: Any = None) -> None:
        self.cluster = cluster
        self.headline = widgets.HTML()
        self.table = widgets.HTML()
        children = [self.headline, self.table]
        if dask_widget is not None:
            children.append(dask_widget)
        super().__init__(children)
        self.add_class("farside-cluster-widget")
        self.render(cluster.info)
        self._refresh = PeriodicCallback(self._tick, REFRESH_SECONDS * 1000)
        if cluster.loop is not None:
            cluster.loop.add_callback(self._refresh.start)

    def render(self, info: ClusterInfo) -> None:
        connected = len(self.cluster.scheduler_info.get("workers", {}))
        self.headline.value = summary(info, connected, self.cluster.dashboard_link)
        self.table.value = workers_table(info)

    async def _tick(self) -> None:
        if self.cluster.status.name in ("closing", "closed"):
            self._refresh.stop()
            info = self.cluster.info
        else:
            try:
                info = await asyncio.to_thread(self.cluster.refresh)
            except Exception:  # the gateway may be briefly away; the next tick retries
                return
        self.render(info)
