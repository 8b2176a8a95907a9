"""Sites' run-time statuses: online, draining or offline, as admins set them.

The configuration file gives each site a status; an admin may override it at run time
(``PUT /api/v1/sites/{name}/status``, or the monitor). Overrides are stored in the
``site_status`` table, so they survive restarts and reach every replica: each
provisioner pass reads them again (:meth:`SiteStatuses.refresh`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select

from farside_protocol import SiteStatus

from ..config import SiteConfig
from ..db import Database
from ..db.schema import site_status

log = logging.getLogger(__name__)

#: site name → (status, the admin's reason)
Overrides = dict[str, tuple[str, str | None]]


def stored_overrides(conn: Connection) -> Overrides:
    return {
        row.site: (row.status, row.reason)
        for row in conn.execute(
            select(site_status.c.site, site_status.c.status, site_status.c.reason)
        )
    }


def store_override(
    conn: Connection, site: str, status: SiteStatus, reason: str | None, by: str, now: float
) -> None:
    conn.execute(delete(site_status).where(site_status.c.site == site))
    conn.execute(
        insert(site_status).values(
            site=site, status=status, reason=reason, changed_by=by, changed_at=now
        )
    )


class SiteStatuses:
    """Applies the stored overrides over the file's statuses, on the sites' configuration
    (``SiteConfig.status``, which brokerage and the provisioner read)."""

    def __init__(self, sites: Sequence[SiteConfig]) -> None:
        self.sites = list(sites)
        #: the configuration file's statuses, to fall back on when an override is removed
        self.from_file = {s.name: s.status for s in sites}
        self.reasons: dict[str, str | None] = {}
        #: counts admins' changes, so that a read that started before one cannot undo it
        self.version = 0

    def apply(self, overrides: Overrides) -> None:
        for site in self.sites:
            status, reason = overrides.get(site.name, (self.from_file[site.name], None))
            if site.status != status:
                log.info("site %s is now %s%s", site.name, status, f": {reason}" if reason else "")
            site.status = SiteStatus(status)
            self.reasons[site.name] = reason

    async def refresh(self, db: Database) -> None:
        """Read the stored overrides and apply them (each provisioner pass)."""
        version = self.version
        overrides = await db.read(stored_overrides)
        if version == self.version:
            self.apply(overrides)

    async def change(
        self, db: Database, site: str, status: SiteStatus, reason: str | None, by: str, now: float
    ) -> None:
        """An admin sets a site's status: stored, then applied at once."""
        await db.write(store_override, site, status, reason, by, now)
        self.version += 1
        overrides = {s.name: (str(s.status), self.reasons.get(s.name)) for s in self.sites}
        overrides[site] = (status, reason)
        self.apply(overrides)
