"""The monitor's page (Panel): my work, errors, sites and users, kept live.

Each browser session reads the pool through the gateway's own database (no HTTP round
trip) and redraws when the gateway's notifier says one of the user's jobs changed, at most
twice a second; admins, who see everyone's work, are redrawn every two seconds. Bokeh
sends only the tables that changed over the page's websocket: no page reloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import panel as pn
from sqlalchemy import Connection

from ..api.info import site_infos
from ..auth.tokens import Principal
from ..pool.workflows import list_workflows
from ..runtime import Runtime
from . import queries, render
from .job_view import JobPanel
from .login import COOKIE, PATH, session_principal
from .site_switch import SiteSwitch

#: seconds between redraws at most, and without any news at the least
FASTEST, SLOWEST = 0.5, 5.0
ADMIN_PERIOD = 2.0
WINDOWS = {"last hour": 3600.0, "last day": 86400.0, "last week": 7 * 86400.0}


@dataclass
class Snapshot:
    """What one redraw shows (read in one transaction)."""

    groups: list[queries.GroupProgress]
    workflows: list[Any]
    clusters: list[tuple[str, str, str]]
    errors: list[queries.ErrorGroup]
    users: list[queries.UserUsage]
    queued: dict[str, int]


def _read(conn: Connection, owner: str | None, since: float, sites: list[str]) -> Snapshot:
    return Snapshot(
        groups=queries.groups(conn, owner),
        workflows=list_workflows(conn, owner, None, 20),
        clusters=queries.live_clusters(conn, owner),
        errors=queries.error_summary(conn, owner, since),
        users=queries.usage(conn, owner),
        queued=queries.queued_by_site(conn, sites),
    )


class MonitorPage:
    """One browser session's page."""

    def __init__(self, rt: Runtime, who: Principal) -> None:
        self.rt = rt
        self.who = who
        self.work = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["farside-work"])
        self.runs = pn.pane.HTML(sizing_mode="stretch_width")
        self.clusters = pn.pane.HTML(sizing_mode="stretch_width")
        self.errors = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["farside-errs"])
        self.sites = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["farside-site"])
        sites_tab: Any = self.sites
        if who.admin:
            sites_tab = pn.Column(SiteSwitch(rt, who, self._soon).layout, self.sites)
        self.users = pn.pane.HTML(sizing_mode="stretch_width")
        self.window = pn.widgets.RadioButtonGroup(options=list(WINDOWS), value="last day")
        self.window.param.watch(lambda _: self._soon(), "value")
        self.updated = pn.pane.HTML("", css_classes=["farside-updated"])
        role = "admin: everyone's work" if who.admin else "your work"
        header = pn.pane.HTML(
            f"<h2>farside monitor</h2><p>{who.name} ({role}) · "
            f"<a href='{PATH}/logout'>log out</a></p>"
        )
        mine = pn.Column(
            "### Maps and jobs",
            self.work,
            "### Workflow runs",
            self.runs,
            "### Dask clusters",
            self.clusters,
        )
        self.job = JobPanel(rt, who)
        tabs = pn.Tabs(
            ("My work", mine),
            ("Errors", pn.Column(self.window, self.errors)),
            ("Sites", sites_tab),
            ("Users", self.users),
            ("Job", self.job.layout),
            dynamic=False,
        )
        # a link to a job (?job=N, as the error summary's samples are) opens its tab
        asked = pn.state.location.query_params.get("job") if pn.state.location else None
        if asked is not None and str(asked).isdigit():
            self.job.chooser.value = int(asked)
            tabs.active = len(tabs) - 1
        self.layout = pn.Column(header, tabs, self.updated, sizing_mode="stretch_width")
        self._last = 0.0
        self._due = 0.0
        self._waiter = rt.notifier.events.waiter(who.name)

    def _soon(self) -> None:
        self._due = 0.0

    async def tick(self) -> None:
        """Redraw when news came (or the slowest period passed), at the fastest rate."""
        now = time.monotonic()
        if now - self._last < FASTEST:
            return
        news = self._waiter.is_set() and not self.who.admin
        period = ADMIN_PERIOD if self.who.admin else SLOWEST
        if not news and now < self._due and now - self._last < period:
            return
        self._waiter = self.rt.notifier.events.waiter(self.who.name)  # before the read
        self._last = now
        self._due = now + period
        await self.redraw()

    async def redraw(self) -> None:
        owner = self.who.owner_filter
        since = time.time() - WINDOWS[self.window.value]
        names = [s.name for s in self.rt.config.sites]
        snap = await self.rt.db.read(_read, owner, since, names)
        now = time.time()
        self._set(self.work, render.groups_table(snap.groups, now, owner is None))
        self._set(self.runs, render.workflows_table(snap.workflows))
        self._set(self.clusters, render.clusters_table(snap.clusters))
        self._set(self.errors, render.errors_table(snap.errors))
        self._set(self.users, render.users_table(snap.users, self.rt.share_rules))
        self._set(self.sites, render.sites_table(await site_infos(self.rt), snap.queued))
        await self.job.redraw()
        self.updated.object = f"<small>updated {time.strftime('%H:%M:%S')}</small>"

    @staticmethod
    def _set(pane: pn.pane.HTML, text: str) -> None:
        if pane.object != text:  # only what changed goes over the websocket
            pane.object = text


def page_for(rt: Runtime) -> Any:
    """The Panel app: a function making each session's page."""

    def page() -> Any:
        who = session_principal(rt.clusters.sealer, pn.state.cookies.get(COOKIE))
        if who is None:
            return pn.pane.HTML(
                f"<h2>farside monitor</h2><p>Not logged in, or the session ended: "
                f"<a href='{PATH}/login'>log in</a>.</p>"
            )
        view = MonitorPage(rt, who)
        # the first tick draws at once: the page arrives, its numbers a moment later
        callback = pn.state.add_periodic_callback(
            view.tick,  # type: ignore[arg-type]  # Panel awaits coroutine functions too
            period=int(FASTEST * 1000),
        )
        pn.state.on_session_destroyed(lambda _: callback.stop())
        return view.layout

    return page
