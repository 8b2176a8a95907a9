"""The provisioner: keep each site's pilots between its warm minimum and what demand needs.

Each pass reconciles wanted against observed state, so a restarted gateway simply picks up
where the last one stopped:

* status: an admin's run-time site status (``site_status`` table) is applied;
* observe: pilots the database believes alive are checked against each batch system; a
  pilot whose batch job vanished without saying goodbye is *lost* and its jobs retried
  (as a resource error when the site's batch system says it ran out of memory:
  ``Site.classify_end``); one that never
  registered within ``pilot_start_timeout`` is given up;
* offline sites: their pilots are stopped (their jobs are retried elsewhere);
* plan: the queued jobs at the head of the queue are placed on the best site that fits
  each (:mod:`farside_gateway.broker.plan`), which says how many new pilots each site needs;
* act: submit them, with backoff on failing submissions.

Idle pilots leave by themselves: the gateway answers their idle long-poll with ``retire``
unless the site would fall below its warm minimum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from farside_protocol import JobState, PilotState, SiteStatus

from . import replicas
from .broker.match import NEED_COLUMNS, Need
from .broker.plan import SiteView, head_size, place
from .config import GatewayConfig, SiteConfig
from .db.schema import AnyRow, jobs, pilots
from .pool import pilots as pilot_records
from .pool.outcomes import LeasePolicy
from .pool.retries import release_pilot, take_back
from .pool.transaction import Pool
from .sites.base import BatchState, BatchStatus, Site
from .sites.statuses import SiteStatuses

log = logging.getLogger(__name__)

_HELD = [JobState.ASSIGNED.value, JobState.RUNNING.value]
_GONE = BatchStatus(BatchState.GONE)


@dataclass(frozen=True)
class Snapshot:
    """What one pass reads from the database."""

    live: dict[str, list[AnyRow]]  # live pilots per site
    held: dict[str, tuple[int, int, int]]  # cores, memory, GPUs held per site
    head: list[Need]  # queued jobs at the head of the queue, best first


def read_snapshot(conn: Connection, sites: list[SiteConfig]) -> Snapshot:
    live: dict[str, list[AnyRow]] = {s.name: [] for s in sites}
    for row in conn.execute(
        select(pilots).where(pilots.c.state.in_(pilot_records.LIVE_PILOT_STATES))
    ):
        live.setdefault(row.site, []).append(row)
    held = {
        site: (int(c or 0), int(m or 0), int(g or 0))
        for site, c, m, g in conn.execute(
            select(
                jobs.c.site, func.sum(jobs.c.cores), func.sum(jobs.c.memory), func.sum(jobs.c.gpus)
            )
            .where(jobs.c.state.in_(_HELD))
            .group_by(jobs.c.site)
        )
    }
    head = [
        Need.of_row(row)
        for row in conn.execute(
            select(*NEED_COLUMNS)
            .where(jobs.c.state == JobState.QUEUED.value)
            .order_by(jobs.c.priority.desc(), jobs.c.id)
            .limit(head_size(sites))
        )
    ]
    return Snapshot(live, held, head)


class Provisioner:
    """Runs one reconcile pass over all sites; the runtime calls :meth:`run_once` in a loop.

    ``instance``: this replica's name, to know whether it leads (:mod:`.replicas`).
    """

    def __init__(
        self,
        config: GatewayConfig,
        pool: Pool,
        sites: Mapping[str, Site],
        statuses: SiteStatuses,
        policy: LeasePolicy,
        *,
        instance: str,
    ) -> None:
        self.config = config
        self.pool = pool
        self.db = pool.db
        self.now = pool.now
        self.sites = sites
        self.statuses = statuses
        self.policy = policy
        self.instance = instance
        self._cancelled: set[int] = set()  # pilots whose batch jobs this process cancelled

    async def run_once(self) -> None:
        if not await self._leading():
            return
        await self.statuses.refresh(self.db)
        snapshot = await self.db.read(read_snapshot, self.config.sites)
        views: list[SiteView] = []
        for site in self.sites.values():
            try:
                alive = await self.observe(site, snapshot.live.get(site.name, []))
            except Exception:
                log.exception("observing site %s failed; will retry", site.name)
                continue
            views.append(self._view(site.config, alive, snapshot, site.health.healthy))
        wanted = place(views, snapshot.head)
        for site in self.sites.values():
            if wanted.get(site.name):
                try:
                    await self.submit(site, wanted[site.name])
                except Exception:
                    log.exception("provisioning site %s failed; will retry", site.name)

    async def _leading(self) -> bool:
        """Whether this replica provisions: the only one on SQLite, the leader among
        replicas on PostgreSQL (:mod:`farside_gateway.replicas`)."""
        if self.db.is_sqlite:
            return True
        since = self.now() - self.config.clusters.adopt_after
        leader = await self.db.read(replicas.leader, since)
        # before any replica has said it is alive (a first start), everyone may act
        return leader is None or leader == self.instance

    def _view(
        self, cfg: SiteConfig, alive: list[AnyRow], snapshot: Snapshot, healthy: bool
    ) -> SiteView:
        running = sum(1 for p in alive if p.state == PilotState.RUNNING)
        queued = sum(1 for p in alive if p.state == PilotState.SUBMITTED)
        cores, memory, gpus = snapshot.held.get(cfg.name, (0, 0, 0))
        slots = running + queued
        return SiteView(
            cfg,
            running,
            queued,
            free_cores=slots * cfg.cores - cores,
            free_memory=slots * cfg.memory - memory,
            free_gpus=slots * cfg.gpus - gpus,
            healthy=healthy,
        )

    async def observe(self, site: Site, live: list[AnyRow]) -> list[AnyRow]:
        """Settle pilots whose batch jobs ended or never started; return those still taking
        work (running or waiting to start; not retiring)."""
        batch_ids = [p.batch_id for p in live if p.batch_id]
        observed = await site.observe(batch_ids) if batch_ids else {}
        now = self.now()
        offline = site.config.status == SiteStatus.OFFLINE
        alive = []
        for pilot in live:
            status = observed.get(pilot.batch_id, _GONE) if pilot.batch_id else None
            if status is not None and status.state is BatchState.GONE:
                await self._lost(site, pilot, status)
                why = f" ({status.reason})" if status.reason else ""
                if pilot.state == PilotState.SUBMITTED:
                    # it never started: as bad as a refused submission, so back off rather
                    # than replace it at once, pass after pass
                    site.submission_failed(
                        RuntimeError(f"pilot {pilot.id} ended before it registered{why}"), now
                    )
                continue
            if offline:
                await self._stop(site, pilot, "its site was set offline")
                continue
            if (
                pilot.state == PilotState.SUBMITTED
                and now - (pilot.submitted_at or now) > self.config.pilot_start_timeout
            ):
                timeout = self.config.pilot_start_timeout
                reason = f"pilot {pilot.id} did not register within {timeout:.0f}s"
                await self.db.write(pilot_records.give_up, pilot.id, "failed", reason, now)
                if pilot.batch_id:
                    await site.cancel(pilot.batch_id)
                continue
            if pilot.state != "retiring":
                alive.append(pilot)
        return alive

    async def _lost(self, site: Site, pilot: AnyRow, status: BatchStatus) -> None:
        """The pilot's batch job ended without the pilot saying goodbye: retry its jobs, as
        resource errors when the batch system says it ran out of something."""
        why = f" ({status.reason})" if status.reason else ""
        error_class, resource = site.classify_end(status.reason)
        reason = (
            f"pilot {pilot.id} lost: its batch job {pilot.batch_id} on site {site.name} "
            f"ended{why} without the pilot saying goodbye"
        )
        await self.pool.write(
            lambda tx: release_pilot(
                tx,
                pilot.id,
                "lost",
                reason,
                self.policy,
                error_class=error_class,
                resource=resource,
            )
        )

    async def _stop(self, site: Site, pilot: AnyRow, why: str) -> None:
        """Take a pilot's jobs back (they are retried elsewhere) and cancel its batch job:
        the pilot gets SIGTERM and says goodbye. Once per pilot."""
        if pilot.id in self._cancelled:
            return
        reason = f"pilot {pilot.id} on site {site.name} stopped: {why}"
        # also a pilot that was already retiring: it may still hold jobs
        await self.pool.write(lambda tx: take_back(tx, pilot.id, reason, self.policy))
        if pilot.batch_id:
            await site.cancel(pilot.batch_id)
        self._cancelled.add(pilot.id)
        log.info("site %s: stopping pilot %d: %s", site.name, pilot.id, why)

    async def submit(self, site: Site, count: int) -> None:
        now = self.now()
        if not site.may_submit(now):
            return
        for _ in range(count):
            pilot_id, token = await self.db.write(pilot_records.create_submitted, site.name, now)
            try:
                batch_id = await site.submit(site.launch_for(pilot_id, token))
            except Exception as exc:
                await self.db.write(
                    pilot_records.give_up, pilot_id, "failed", f"submission failed: {exc}", now
                )
                site.submission_failed(exc, now)
                return
            site.submitted_ok()
            await self.db.write(pilot_records.set_batch_id, pilot_id, batch_id)
            log.info("site %s: submitted pilot %d (batch id %s)", site.name, pilot_id, batch_id)
