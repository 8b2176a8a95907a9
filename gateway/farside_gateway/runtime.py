"""The gateway's services in one object: database, blobs, notifier, sites, background loops.

The ASGI app holds one :class:`Runtime`; handlers reach it through ``request.app.state``.
Nothing here keeps state a restart would lose: the database is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from .auth.hub import HubValidator
from .auth.oidc import OidcValidator
from .auth.tokens import TokenCache
from .blobs import BlobStore
from .clusters.manager import ClusterManager
from .config import GatewayConfig
from .db import Database
from .metrics import Metrics
from .notify import Notifier
from .pgbus import PgBus
from .pool.fairshare import ShareRules
from .pool.heartbeats import HeartbeatBatcher
from .pool.outcomes import LeasePolicy
from .pool.retries import grant_grace, reap
from .pool.scouts import release_scouted
from .pool.transaction import Pool
from .provision import Provisioner
from .sites.base import Site, load_site
from .sites.statuses import SiteStatuses

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        public_url: str,
        bootstrap: Sequence[Callable[[Connection], None]] = (),
    ) -> None:
        self.config = config
        self.bootstrap = list(bootstrap)
        self.exit_status = 0
        self.public_url = public_url
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.resolved_database_url)
        self.metrics = Metrics()
        self.db.observe = self.metrics.observe_db
        self.metrics.watch_pool(self.db.run_sync)
        self.blobs = BlobStore(config.resolved_blob_url)
        self.notifier = Notifier()
        # replicas sharing a PostgreSQL database wake each other's waiters (pgbus.py)
        self.bus = None if self.db.is_sqlite else PgBus(config.resolved_database_url, self.notifier)
        self.notifier.remote = self.bus.send if self.bus is not None else None
        #: every change to jobs goes through it (pool/transaction.py)
        self.pool = Pool(self.db, self.notifier, self.now)
        self.tokens = TokenCache()
        # validators for tokens that are not farside's own; each keeps its cache (and the
        # issuer's keys) for the life of the process
        groups = config.fair_share.groups
        self.oidc = OidcValidator(config.oidc, share_groups=groups) if config.oidc.enabled else None
        self.hub = HubValidator(config.hub, share_groups=groups) if config.hub.enabled else None
        self.lease_policy = LeasePolicy(
            lease_timeout=config.heartbeat_timeout,
            max_system_attempts=config.max_system_attempts,
            max_resource_attempts=config.max_resource_attempts,
            sites=tuple(config.sites),
        )
        # 2,000 beats a second from 10,000 pilots: written in batches (pool/heartbeats.py)
        self.heartbeats = HeartbeatBatcher(self.db, self.lease_policy, self.now)
        fair = config.fair_share
        self.share_rules = ShareRules(
            groups=dict(fair.groups),
            default_share=fair.default_share,
            max_jobs=fair.max_running_jobs_per_user,
            max_cores=fair.max_cores_per_user,
        )
        self.sites: dict[str, Site] = {
            s.name: load_site(s, public_url, config.state_dir) for s in config.sites
        }
        self.site_statuses = SiteStatuses(config.sites)
        self._sites_started = False
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.clusters = ClusterManager(config, self.db, self.pool, self.now, sites=self.sites)
        self.provisioner = Provisioner(
            config,
            self.pool,
            self.sites,
            self.site_statuses,
            self.lease_policy,
            instance=self.clusters.instance,
        )

    @staticmethod
    def now() -> float:
        return time.time()

    async def start(self) -> None:
        await asyncio.to_thread(self.db.migrate)
        for hook in self.bootstrap:
            await self.db.write(hook)
        # time the gateway was down must not count against pilots: give every live pilot
        # and lease a full timeout from now to reconnect
        await self.db.write(grant_grace, self.now(), self.config.heartbeat_timeout)
        if not self._sites_started:
            await self.start_sites()
        await self.clusters.start()
        if self.bus is not None:
            await self.bus.start()
        self._tasks = [
            asyncio.create_task(
                self._loop(
                    "clusters",
                    self.clusters.reconciler.run_once,
                    self.config.clusters.check_interval,
                    lambda: self.stopping,
                ),
                name="clusters",
            ),
            asyncio.create_task(
                self._loop(
                    "reaper", self._reap, self.config.reaper_interval, lambda: self.stopping
                ),
                name="reaper",
            ),
            asyncio.create_task(
                # the avalanche follows its scouts within a pass
                self._loop(
                    "scouts",
                    self._release_scouted,
                    self.config.reaper_interval,
                    lambda: self.stopping,
                ),
                name="scouts",
            ),
            asyncio.create_task(
                self._loop(
                    "provisioner",
                    self.provisioner.run_once,
                    self.config.provision_interval,
                    # new queued work wakes it early, so a cold site starts pilots at once
                    lambda: self.notifier.work.waiter(self.notifier.WORK),
                ),
                name="provisioner",
            ),
        ]

    async def start_sites(self) -> None:
        """Let each site plugin check its batch system (before serving, so that a missing
        ``sbatch`` is a one-line error, not a traceback from inside the server)."""
        for site in self.sites.values():
            await site.start()
        self._sites_started = True

    async def _release_scouted(self) -> None:
        config = self.config
        await self.pool.write(lambda tx: release_scouted(tx, config.scouts, config.sites))

    async def _reap(self) -> None:
        timeout = self.config.heartbeat_timeout
        await self.pool.write(lambda tx: reap(tx, self.lease_policy, timeout))

    async def _loop(
        self,
        name: str,
        step: Callable[[], Any],
        interval: float,
        wake: Callable[[], asyncio.Event],
    ) -> None:
        """Run ``step`` every ``interval`` seconds, or sooner when ``wake()``'s event is set."""
        while not self.stopping.is_set():
            # taken before the pass, so a wake-up during the pass is not lost
            waiter = wake()
            try:
                await step()
            except Exception:
                log.exception("%s pass failed; retrying in %.1fs", name, interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await waiter.wait()

    async def stop_pilots(self) -> None:
        """Stop the pilots this gateway started (``farside up`` on Ctrl-C).

        Provisioning stops first, or it would replace the pilots as they leave.
        """
        for task in self._tasks:
            if task.get_name() == "provisioner":
                task.cancel()
        for site in self.sites.values():
            try:
                await site.stop()
            except Exception:
                log.exception("stopping site %s failed", site.name)

    async def stop(self) -> None:
        try:
            await self.clusters.close()
        except Exception:
            log.exception("stopping the Dask clusters failed")
        self.stopping.set()
        self.notifier.wake_everyone()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.heartbeats.close()
        if self.bus is not None:
            await self.bus.stop()
        await asyncio.to_thread(self.db.close)
