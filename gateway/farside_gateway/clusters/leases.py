"""Each cluster's worker leases, kept at its groups' targets and ended with it.

Both the owner's requests (a new cluster, a scale, a new group) and the reconcile pass meet
a cluster's targets through :meth:`WorkerLeases.reconcile`, one cluster at a time; surplus
running workers are retired on the scheduler before their leases are cancelled. Every
change to the lease jobs goes through the pool (:meth:`..pool.transaction.Pool.write`).
"""

from __future__ import annotations

import asyncio
import logging

from ..db import Database
from ..pool.submit import cancel_jobs
from ..pool.transaction import Pool, PoolTransaction
from . import store
from .config import ClustersConfig
from .scheduler_rpc import SchedulerRpc

log = logging.getLogger(__name__)


class WorkerLeases:
    def __init__(
        self, settings: ClustersConfig, db: Database, pool: Pool, rpc: SchedulerRpc
    ) -> None:
        self.db = db
        self.pool = pool
        self.rpc = rpc
        self.terms = store.LeaseTerms(death_timeout=settings.worker_death_timeout)
        self.max_failures = settings.max_worker_failures
        self._locks: dict[str, asyncio.Lock] = {}

    async def reconcile(self, name: str) -> None:
        """Submit and cancel cluster ``name``'s leases to meet its targets (see
        :func:`.store.reconcile`); running surplus is retired first, then cancelled."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            retire = await self.pool.write(
                lambda tx: store.reconcile(tx, name, self.terms, self.max_failures)
            )
            if not retire:
                return
            row = await self.db.read(store.get_cluster, name, None)
            await self.rpc.retire(row, list(retire.values()))
            reason = f"cluster {name} scaled down"
            await self.pool.write(lambda tx: cancel_jobs(tx, row.owner, list(retire), None, reason))

    async def mark_ended(self, name: str, state: str, reason: str) -> None:
        """Cluster ``name`` ended (``state``: stopped or failed): its leases end with it."""

        def end(tx: PoolTransaction) -> None:
            row = store.get_cluster(tx.conn, name, None)
            store.end_leases(tx, row, f"cluster {name} {state}: {reason}")
            store.set_cluster(tx.conn, name, state=state, reason=reason, ended_at=tx.now)

        await self.pool.write(end)
        self._locks.pop(name, None)
        log.info("cluster %s %s: %s", name, state, reason)
