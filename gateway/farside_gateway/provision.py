"""The provisioner: keep each site's pilots between its warm minimum and what demand needs.

Each pass reconciles wanted against observed state, so a restarted gateway simply picks up
where the last one stopped:

* observe: pilots the database believes alive are checked against the batch system; a
  pilot whose batch job vanished without saying goodbye is *lost* and its jobs retried;
  one that never registered within ``pilot_start_timeout`` is given up;
* want: ``ceil(cores of queued jobs that fit the site + cores held on the site) / slot``,
  clamped to ``[min_warm, max_pilots]``;
* act: submit the difference (never more pilots than demand), with backoff on failures.

Idle pilots leave by themselves: the gateway answers their idle long-poll with ``retire``
unless the site would fall below its warm minimum.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import Connection, func, select

from farside_pilot.protocol import JobState

from .broker.match import queued_fitting
from .config import SiteConfig
from .db.schema import jobs
from .pool import pilots as pilot_records
from .pool.retries import release_pilot
from .sites.base import BatchState, BatchStatus, Site

log = logging.getLogger(__name__)

_HELD = [JobState.ASSIGNED.value, JobState.RUNNING.value]
_GONE = BatchStatus(BatchState.GONE)


def site_demand(conn: Connection, site: SiteConfig) -> tuple[int, int]:
    """Cores of queued jobs that fit one of the site's slots (capped) and cores held there."""
    fits = select(jobs.c.cores).where(
        queued_fitting(site.name, site.cores, site.memory, site.gpus, site.walltime)
    )
    # enough rows to fill every pilot the site may have; counting further changes nothing
    capped = fits.limit(site.max_pilots * site.cores + 1).subquery()
    queued = conn.execute(select(func.coalesce(func.sum(capped.c.cores), 0))).scalar_one()
    held = conn.execute(
        select(func.coalesce(func.sum(jobs.c.cores), 0)).where(
            jobs.c.site == site.name, jobs.c.state.in_(_HELD)
        )
    ).scalar_one()
    return int(queued), int(held)


def wanted_pilots(site: SiteConfig, queued_cores: int, held_cores: int) -> int:
    needed = math.ceil((queued_cores + held_cores) / site.cores)
    if site.status != "online":
        needed = 0
    return max(site.min_warm if site.status == "online" else 0, min(site.max_pilots, needed))


class Provisioner:
    """Runs one reconcile pass per site; the runtime calls :meth:`run_once` in a loop."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    async def run_once(self) -> None:
        for site in self.rt.sites.values():
            try:
                await self.reconcile(site)
            except Exception:
                log.exception("provisioning site %s failed; will retry", site.name)

    async def reconcile(self, site: Site) -> None:
        rt = self.rt
        live = await rt.db.read(
            pilot_records.site_pilots, site.name, pilot_records.LIVE_PILOT_STATES
        )
        batch_ids = [p.batch_id for p in live if p.batch_id]
        observed = await site.observe(batch_ids) if batch_ids else {}
        now = rt.now()
        alive = 0
        for pilot in live:
            status = observed.get(pilot.batch_id, _GONE) if pilot.batch_id else None
            if status is not None and status.state is BatchState.GONE:
                why = f" ({status.reason})" if status.reason else ""
                await rt.write_and_publish(
                    release_pilot, pilot.id, "lost",
                    f"pilot {pilot.id} lost: its batch job {pilot.batch_id} on site {site.name} "
                    f"ended{why} without the pilot saying goodbye",
                    rt.lease_policy,
                )  # fmt: skip
                continue
            if (
                pilot.state == "submitted"
                and now - (pilot.submitted_at or now) > rt.config.pilot_start_timeout
            ):
                reason = (
                    f"pilot {pilot.id} did not register within {rt.config.pilot_start_timeout:.0f}s"
                )
                await rt.db.write(pilot_records.give_up, pilot.id, "failed", reason, now)
                if pilot.batch_id:
                    await site.cancel(pilot.batch_id)
                continue
            if pilot.state != "retiring":
                alive += 1
        queued, held = await rt.db.read(site_demand, site.config)
        missing = wanted_pilots(site.config, queued, held) - alive
        if missing <= 0 or not site.may_submit(now):
            return
        for _ in range(missing):
            pilot_id, token = await rt.db.write(pilot_records.create_submitted, site.name, now)
            try:
                batch_id = await site.submit(site.launch_for(pilot_id, token))
            except Exception as exc:
                await rt.db.write(
                    pilot_records.give_up, pilot_id, "failed", f"submission failed: {exc}", now
                )
                site.submission_failed(exc, now)
                return
            site.submitted_ok()
            await rt.db.write(pilot_records.set_batch_id, pilot_id, batch_id)
            log.info("site %s: submitted pilot %d (batch id %s)", site.name, pilot_id, batch_id)
