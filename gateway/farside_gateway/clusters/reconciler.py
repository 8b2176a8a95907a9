"""The reconcile pass: what a gateway replica does to its clusters every ``check_interval``.

Apart from the requests (:mod:`.manager`), as dask-gateway's backends keep their reconcile
loop apart from their request handlers. Each pass, the replica says it is alive and adopts
the clusters of replicas that are gone (:mod:`.adoption`); then, for each cluster it
manages: ends it if asked, stops it when its client is gone and it has no work, notices an
operator's cluster that is gone, adapts its default group (:mod:`.adaptive`) and meets its
targets with worker leases (:mod:`.leases`). Once an hour it prunes old scheduler logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from farside_protocol import FarsideError
from farside_protocol.clusters import DEFAULT_GROUP, ClusterInfo

from .. import replicas
from ..auth.tokens import Principal
from ..db import Database
from . import adoption, store
from .adaptive import adapt_step
from .config import ClustersConfig
from .keeper import SchedulerKeeper
from .leases import WorkerLeases
from .operator import OperatorClusters
from .process import Spares, prune_logs
from .scheduler_rpc import RPC_TIMEOUT, SchedulerRpc

log = logging.getLogger(__name__)

#: seconds between looks for scheduler logs past ``log_retention``
PRUNE_INTERVAL = 3600.0


class Resize(Protocol):
    """The owner's requests that adapting makes on the owner's behalf."""

    async def scale(self, who: Principal, name: str, workers: int, group: str) -> ClusterInfo: ...

    async def stop_workers(self, who: Principal, name: str, workers: list[str]) -> ClusterInfo: ...


class Reconciler:
    def __init__(
        self,
        settings: ClustersConfig,
        db: Database,
        now: Callable[[], float],
        *,
        instance: str,
        replicated: bool,
        keeper: SchedulerKeeper,
        leases: WorkerLeases,
        operator: OperatorClusters,
        rpc: SchedulerRpc,
        spares: Spares,
        log_dir: Path,
        resize: Resize,
        proxied: Callable[[str], bool],
    ) -> None:
        """``proxied(name)``: whether a dask-gateway client is connected to cluster
        ``name`` through the gateway's proxy (alive, if silent)."""
        self.settings = settings
        self.db = db
        self.now = now
        self.instance = instance
        self.replicated = replicated
        self.keeper = keeper
        self.leases = leases
        self.operator = operator
        self.rpc = rpc
        self.spares = spares
        self.log_dir = log_dir
        self.resize = resize
        self.proxied = proxied
        self._pruned_at = 0.0

    async def run_once(self) -> None:
        await self._prune_logs()
        now = self.now()
        if self.replicated:
            await self._adopt_orphans(now)
        rows = await self.db.read(store.live_clusters, None, self.instance)
        for row in rows:
            if row.operator_site:
                if await self._check_operator(row) and row.adapt:
                    await self._adapt(row)  # as for any cluster: the scheduler says how many
                continue
            if row.state == "stopping":
                await self.keeper.stop(row.name, row.reason or "stopped")
                continue
            if row.state != "running" or not self.keeper.manages(row.name):
                continue
            if row.name in self.keeper.adopted and not await self.keeper.keep_alive(row):
                continue
            lapse = now - (row.last_client_seen or row.created_at)
            if self.proxied(row.name):
                # a dask-gateway client, connected through the proxy: alive, if silent
                await self.db.write(store.set_cluster, row.name, last_client_seen=now)
                lapse = 0.0
            if lapse > self.settings.client_timeout and await self.rpc.idle(row):
                await self.keeper.stop(
                    row.name,
                    f"no client heartbeat for {lapse:.0f}s and no tasks: the kernel that "
                    "used it is gone",
                )
                continue
            if row.adapt:
                await self._adapt(row)
            await self.leases.reconcile(row.name)

    async def _adopt_orphans(self, now: float) -> None:
        """Say this replica is alive; take on the clusters of replicas that are not."""
        await self.db.write(replicas.beat, self.instance, now)
        since = now - self.settings.adopt_after
        for row in await self.db.read(adoption.orphans, self.instance, since):
            if await self.db.write(adoption.claim, row.name, row.instance, self.instance):
                gone = f"its gateway replica {row.instance} is gone"
                if row.operator_site:
                    continue  # the operator runs it; this replica watches it from now on
                if row.state == "stopping":
                    self.keeper.adopted.add(row.name)  # the pass below ends it
                else:
                    await self.keeper.adopt(row, gone)

    async def _check_operator(self, row: Any) -> bool:
        """An operator's cluster: end it if asked, or notice that its resource is gone.
        Whether it is running still."""
        if row.state == "stopping":
            await self.operator.stop(row)
            await self.leases.mark_ended(row.name, "stopped", row.reason or "stopped")
            return False
        if row.state == "running" and await self.operator.gone(row):
            await self.leases.mark_ended(
                row.name,
                "stopped",
                "its DaskCluster is gone: idle past idle_timeout, or deleted in Kubernetes",
            )
            return False
        return bool(row.state == "running")

    async def _adapt(self, row: Any) -> None:
        owner = Principal("user", row.owner)

        async def call(row: Any, method: str, **kwargs: Any) -> Any:
            return await self.rpc.call(row, method, RPC_TIMEOUT, **kwargs)

        async def scale(workers: int) -> None:
            await self.resize.scale(owner, row.name, workers, DEFAULT_GROUP)

        async def stop(names: list[str]) -> None:
            await self.resize.stop_workers(owner, row.name, names)

        try:
            await adapt_step(row, store.load_groups(row), call, scale, stop)
        except FarsideError as exc:  # e.g. a cap reached: the next pass tries again
            log.info("cluster %s: adapting: %s", row.name, exc)

    async def _prune_logs(self) -> None:
        """Scheduler logs of clusters (and of spares of earlier gateway processes) go once
        they are ``log_retention`` old; those of running schedulers stay."""
        now = time.time()
        if now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        keep = self.keeper.log_paths + self.spares.log_paths
        try:
            deleted = await asyncio.to_thread(
                prune_logs, str(self.log_dir), keep, self.settings.log_retention, now
            )
        except OSError as exc:  # a full or read-only disk must not stop the reconcile pass
            log.warning("could not prune scheduler logs in %s: %s", self.log_dir, exc)
            return
        if deleted:
            log.info("deleted %d scheduler logs older than log_retention", len(deleted))
