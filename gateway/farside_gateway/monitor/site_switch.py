"""The admins' switch on the monitor's Sites tab: set a site online, draining or offline,
with a reason, as ``farside site-status`` and ``PUT /sites/{name}/status`` do."""

from __future__ import annotations

import html
from collections.abc import Callable

import panel as pn

from farside_protocol import FarsideError, SiteStatus
from farside_protocol.models import SiteStatusChange

from ..api.info import change_site_status
from ..auth.tokens import Principal
from ..runtime import Runtime

STATUSES = [status.value for status in SiteStatus]


class SiteSwitch:
    def __init__(self, rt: Runtime, who: Principal, changed: Callable[[], None]) -> None:
        self.rt = rt
        self.who = who
        self._changed = changed
        names = [s.name for s in rt.config.sites]
        self.site = pn.widgets.Select(name="site", options=names, width=160)
        self.status = pn.widgets.Select(name="status", options=STATUSES, width=120)
        self.reason = pn.widgets.TextInput(name="reason", placeholder="why (shown to users)")
        apply = pn.widgets.Button(name="Set status", button_type="warning", width=110)
        apply.on_click(self.apply)
        self.message = pn.pane.HTML(css_classes=["farside-site-message"])
        self.layout = pn.Column(
            pn.Row(self.site, self.status, self.reason, apply, align="end"), self.message
        )

    async def apply(self, _: object = None) -> None:
        try:
            change = SiteStatusChange(
                status=self.status.value, reason=self.reason.value_input or None
            )
            info = await change_site_status(self.rt, self.site.value, change, self.who.name)
        except (FarsideError, ValueError) as exc:
            self.message.object = f"<p class='farside-failed'>{html.escape(str(exc))}</p>"
            return
        self.message.object = f"<p>site {html.escape(info.name)} is now {info.status}</p>"
        self._changed()
