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
from typing import Any, Concatenate, ParamSpec, TypeVar

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
from .pool.changes import Changes
from .pool.fairshare import ShareRules
from .pool.heartbeats import HeartbeatBatcher
from .pool.outcomes import LeasePolicy
from .pool.retries import grant_grace, reap
from .pool.scouts import release_scouted
from .provision import Provisioner
from .sites.base import Site, load_site

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


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
        #: the configuration file's statuses, to fall back on when an override is removed
        self.file_status = {s.name: s.status for s in config.sites}
        self.status_reasons: dict[str, str | None] = {}
        self.status_version = 0
        self._sites_started = False
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.provisioner = Provisioner(self)
        self.clusters = ClusterManager(
            config, self.db, self.write_and_publish, self.now, sites=self.sites
        )

    @staticmethod
    def now() -> float:
        return time.time()

    def apply_site_status(
        self, overrides: dict[str, tuple[str, str | None]], *, changed: bool = False
    ) -> None:
        """Apply admins' run-time site statuses (from the database) over the file's;
        ``changed``: an admin just set one (readers that started earlier must not undo it)."""
        if changed:
            self.status_version += 1
        for site in self.config.sites:
            status, reason = overrides.get(site.name, (self.file_status[site.name], None))
            if site.status != status:
                log.info("site %s is now %s%s", site.name, status, f": {reason}" if reason else "")
            site.status = status  # type: ignore[assignment]  # checked when stored
            self.status_reasons[site.name] = reason

    async def write_and_publish(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(conn, *args, changes)`` in a write transaction, then wake the waiters."""
        changes = Changes(self.now())

        def call(conn: Connection) -> T:
            return fn(conn, *args, changes, **kwargs)  # type: ignore[arg-type]

        result = await self.db.write(call)
        self.notifier.publish(changes)
        return result

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
                    self.clusters.run_once,
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
        await self.write_and_publish(release_scouted, self.config.scouts, self.config.sites)

    async def _reap(self) -> None:
        await self.write_and_publish(reap, self.lease_policy, self.config.heartbeat_timeout)

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
