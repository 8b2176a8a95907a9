"""The lifecycle of interactive clusters: start and close, and the owners' requests
(create, scale, add a group, stop workers, adapt, heartbeat, shut down).

The database holds each cluster's targets and state, so any replica may take a user's
request; the replica that manages a cluster's scheduler (``instance``: the one that
started it, or one that adopted it, see :mod:`.adoption`) acts on it in its reconcile
pass (:mod:`.reconciler`): it meets the targets with worker leases (:mod:`.leases`), stops
a cluster whose client is gone and which has no work, and notices a scheduler that ended
(:mod:`.keeper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from farside_protocol import Conflict, FarsideError, InvalidRequest, ServiceUnavailable
from farside_protocol.clusters import (
    DEFAULT_GROUP,
    ClusterInfo,
    ClusterRequest,
    DaskWorkerLease,
    WorkerGroupSpec,
    group_of,
)

from .. import replicas
from ..auth.tokens import Principal
from ..config import GatewayConfig
from ..db import Database
from ..pool.transaction import Pool
from ..sites.base import Site
from ..sites.kubernetes import KubernetesSite
from . import store
from .dashboard import dashboard_path
from .groups import check_groups, fit_defaults
from .keeper import SchedulerKeeper
from .leases import WorkerLeases
from .operator import OperatorClusters
from .process import SchedulerStartError, Spares
from .reconciler import Reconciler
from .scheduler_rpc import SchedulerRpc
from .sealing import Sealer
from .sni_proxy import SchedulerProxy

# distributed (half a second to import) is imported where a scheduler is talked to, not at
# gateway start: most gateways start and answer long before their first cluster, or never
# hold one.

log = logging.getLogger(__name__)


def _new_credentials() -> tuple[str, str]:
    from distributed.security import Security

    sec = Security.temporary()
    return str(sec.tls_ca_file), str(sec.tls_client_key)


class ClusterManager:
    def __init__(
        self,
        config: GatewayConfig,
        db: Database,
        pool: Pool,
        now: Callable[[], float],
        sites: Mapping[str, Site] | None = None,
    ) -> None:
        self.config = config
        self.settings = config.clusters
        self.db = db
        self.now = now
        self.instance = replicas.instance_name(config.state_dir)
        self.log_dir = Path(config.state_dir) / "clusters"
        self.spares = Spares(self.settings.spare_schedulers, str(self.log_dir))
        self.sealer = Sealer([k.get_secret_value() for k in self.settings.encryption_keys])
        self.rpc = SchedulerRpc(self.sealer)
        self.leases = WorkerLeases(self.settings, db, pool, self.rpc)
        self.keeper = SchedulerKeeper(self.rpc, self.leases.mark_ended, self._row)
        self.operator = OperatorClusters(sites or {})
        self._starting: set[asyncio.Task[None]] = set()  # operator clusters coming up
        # replicas exist only on a shared PostgreSQL: only there do schedulers wait to be
        # adopted when their gateway is gone
        self.replicated = not db.is_sqlite
        self.proxy: SchedulerProxy | None = None
        self.reconciler = Reconciler(
            self.settings,
            db,
            now,
            instance=self.instance,
            replicated=self.replicated,
            keeper=self.keeper,
            leases=self.leases,
            operator=self.operator,
            rpc=self.rpc,
            spares=self.spares,
            log_dir=self.log_dir,
            resize=self,
            proxied=self._proxied,
        )

    # ------------------------------------------------------------ start and shut down

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.replicated:  # alive from the start: the provisioner's first pass asks
            await self.db.write(replicas.beat, self.instance, self.now())
        if self.sealer.ephemeral and not self.db.is_sqlite and self.settings.enabled:
            log.warning(
                "[clusters] encryption_keys is not set: cluster TLS keys are sealed with a key "
                "of this process only, so other gateway replicas cannot hand out the "
                "credentials of its clusters; set the same encryption_keys on every replica"
            )
        # the clusters this instance ran before a restart: on SQLite their schedulers ended
        # with it (their stdin closed); with replicas they may still wait to be adopted
        stale = await self.db.read(store.live_clusters, None, self.instance)
        for row in stale:
            if not row.operator_site:  # the operator's go on without any gateway
                await self.keeper.adopt(row, "the gateway restarted", state_if_ended="stopped")
        if self.settings.enabled and self.settings.spare_schedulers:
            self.spares.fill()
        if self.settings.enabled and self.settings.proxy_port is not None:
            self.proxy = SchedulerProxy(
                self.settings.proxy_host, self.settings.proxy_port, self._scheduler_of
            )
            await self.proxy.start()

    async def _scheduler_of(self, name: str) -> str | None:
        """The running cluster ``name``'s scheduler address, for the dask-gateway proxy."""
        try:
            row = await self.db.read(store.get_cluster, name, None)
        except FarsideError:
            return None
        return str(row.scheduler_address) if row.state == "running" else None

    def _proxied(self, name: str) -> bool:
        return self.proxy is not None and self.proxy.connections[name] > 0

    async def close(self) -> None:
        """The gateway stops. With other replicas alive its clusters go on under one of
        them; else they stop too (workers cancelled, schedulers ended)."""
        if self.proxy is not None:
            await self.proxy.stop()
        for task in self._starting:  # their resources stay; the row says "starting"
            task.cancel()
        since = self.now() - self.settings.adopt_after
        if self.replicated and await self.db.read(replicas.others_alive, self.instance, since):
            names = self.keeper.hand_over()
            if names:
                log.info("handing clusters %s over to the other replicas", ", ".join(names))
        else:
            await self.keeper.stop_all("the gateway stopped")
        with contextlib.suppress(Exception):  # the database may be what is failing
            await self.db.write(replicas.forget, self.instance)
        await self.spares.close()

    async def _row(self, name: str) -> Any:
        return await self.db.read(store.get_cluster, name, None)

    # ------------------------------------------------------------ requests

    def _check_enabled(self) -> None:
        if not self.settings.enabled:
            raise InvalidRequest("this gateway offers no Dask clusters ([clusters] enabled=false)")

    async def create(self, who: Principal, request: ClusterRequest) -> ClusterInfo:
        self._check_enabled()
        groups = {DEFAULT_GROUP: request.default, **request.groups}
        fit_defaults(self.config.sites, groups)
        check_groups(self.config.sites, groups)
        name = f"{who.name.split('@')[0][:20]}-{secrets.token_hex(4)}".lower()
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
        operator_site = self.operator.site_for(groups)
        # the operator's schedulers speak plain TCP inside their cluster: no credentials
        cert, key = ("", "") if operator_site else await asyncio.to_thread(_new_credentials)
        idle = request.idle_timeout or self.settings.idle_timeout

        def insert(conn: Any) -> None:
            store.check_caps(
                conn,
                who.name,
                None,
                groups,
                self.settings.max_clusters_per_user,
                self.settings.max_cores_per_user,
            )
            store.insert_cluster(
                conn,
                {
                    "name": name,
                    "owner": who.name,
                    "state": "starting",
                    "reason": None,
                    "instance": self.instance,
                    "tls_cert": cert,
                    "tls_key": self.sealer.seal(key) if key else "",
                    "operator_site": operator_site.name if operator_site else None,
                    "groups": store.dump_groups(groups),
                    "share_group": who.share_group,
                    "idle_timeout": idle,
                    "created_at": self.now(),
                    "last_client_seen": self.now(),
                },
            )

        await self.db.write(insert)
        if operator_site is not None:
            return await self._start_with_operator(who, name, operator_site, groups, idle)
        try:
            proc = await self.spares.take()
            os.replace(proc.log_path, self.log_dir / f"{name}.log")
            proc.log_path = str(self.log_dir / f"{name}.log")
            ready = await proc.start(
                {
                    "name": name,
                    "tls_cert": cert,
                    "tls_key": key,
                    "listen_host": self.settings.listen_host,
                    "contact_host": self.settings.contact_host or self.settings.listen_host,
                    "dashboard": self.settings.dashboard,
                    "dashboard_host": self.settings.dashboard_host,
                    "dashboard_prefix": dashboard_path(name),
                    "idle_timeout": idle,
                    "orphan_grace": self.settings.orphan_grace if self.replicated else 0,
                }
            )
        except (SchedulerStartError, OSError) as exc:
            await self.leases.mark_ended(name, "failed", f"the scheduler did not start: {exc}")
            raise ServiceUnavailable(
                f"the gateway could not start a Dask scheduler for the cluster: {exc}"
            ) from exc
        # where the gateway's proxy finds it; users get the gateway's own URL for it
        dashboard = (
            f"http://{self.settings.dashboard_host}:{ready.dashboard_port}"
            if ready.dashboard_port
            else None
        )
        self.keeper.started(name, proc)
        await self.db.write(
            store.set_cluster,
            name,
            state="running",
            scheduler_address=ready.address,
            dashboard_link=dashboard,
        )
        log.info("cluster %s of %s: scheduler at %s", name, who.name, ready.address)
        await self.leases.reconcile(name)
        return await self.info(who, name)

    async def _start_with_operator(
        self,
        who: Principal,
        name: str,
        site: KubernetesSite,
        groups: dict[str, WorkerGroupSpec],
        idle: float,
    ) -> ClusterInfo:
        """Create the DaskCluster now; the operator's pods come up in the background (the
        client waits for ``running``, as dask-gateway's does for its backends)."""
        await self.operator.create(site, name, who.name, groups[DEFAULT_GROUP], idle)

        async def wait_running() -> None:
            try:
                address = await self.operator.wait_running(site, name)
            except FarsideError as exc:
                await self.leases.mark_ended(name, "failed", exc.args[0] if exc.args else str(exc))
                return
            await self.db.write(store.set_cluster, name, state="running", scheduler_address=address)
            log.info("cluster %s of %s: run by site %s's Dask operator", name, who.name, site.name)

        task = asyncio.create_task(wait_running(), name=f"operator-{name}")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return await self.info(who, name)

    async def info(self, who: Principal, name: str) -> ClusterInfo:
        def read(conn: Any) -> ClusterInfo:
            row = store.get_cluster(conn, name, who.owner_filter)
            return store.cluster_info(conn, row, self.settings.client_timeout)

        result: ClusterInfo = await self.db.read(read)
        return result

    async def credentials(self, who: Principal, name: str) -> tuple[str, str]:
        row = await self.db.read(store.get_cluster, name, who.owner_filter)
        if row.operator_site:
            return "", ""  # plain TCP: the client connects without TLS
        return row.tls_cert, self.sealer.open(row.tls_key)

    def payload_for_pilot(self, kind: str, payload: bytes | None) -> bytes | None:
        """A job's payload as a pilot gets it: a Dask worker lease with its cluster's TLS
        key opened (the pool holds it sealed); any other payload as it is."""
        if kind != store.KIND or payload is None:
            return payload
        lease = DaskWorkerLease.model_validate_json(payload)
        opened = lease.model_copy(update={"tls_key": self.sealer.open(lease.tls_key)})
        return opened.model_dump_json().encode()

    async def _change_groups(
        self,
        who: Principal,
        name: str,
        change: Callable[[dict[str, WorkerGroupSpec]], None] | None = None,
        stopping: list[str] | None = None,
    ) -> ClusterInfo:
        """Apply ``change`` to the cluster's groups in one transaction, then reconcile.
        ``stopping``: workers to go (each takes one off its group's target) and to be
        retired first, whichever replica reconciles."""

        def update(conn: Any) -> tuple[Any, int]:
            row = store.get_cluster(conn, name, who.owner_filter)
            if row.state != "running":
                raise Conflict(f"cluster {name} is {row.state}: {row.reason or 'start a new one'}")
            groups = store.load_groups(row)
            if change is not None:
                change(groups)
            if row.operator_site and len(groups) > 1:
                raise InvalidRequest(
                    f"cluster {name} is run by the Dask operator of site {row.operator_site}: "
                    "it has one worker group, scaled as a whole (cluster.scale(n))"
                )
            retiring = store.retiring(row)
            if stopping and row.operator_site:
                # its workers are the operator's pods, not leases: their number comes off
                # the target, and the operator retires that many, chosen by the scheduler's
                # workers_to_close (the policy that named these)
                spec = groups[DEFAULT_GROUP]
                fewer = max(0, spec.workers - len(set(stopping)))
                groups[DEFAULT_GROUP] = spec.model_copy(update={"workers": fewer})
            elif stopping:
                live = {lease.name for lease in store.lease_rows(conn, row, live_only=True)}
                # a worker already gone (or named twice) takes nothing off the target
                for worker in sorted((set(stopping) & live) - retiring):
                    group = group_of(worker)
                    if group in groups and groups[group].workers > 0:
                        spec = groups[group]
                        groups[group] = spec.model_copy(update={"workers": spec.workers - 1})
                        retiring.add(worker)
            check_groups(self.config.sites, groups)
            store.check_caps(
                conn,
                row.owner,
                name,
                groups,
                self.settings.max_clusters_per_user,
                self.settings.max_cores_per_user,
            )
            store.set_cluster(
                conn,
                name,
                groups=store.dump_groups(groups),
                reason=None,
                retiring=store.dump_retiring(retiring),
            )
            return row, groups[DEFAULT_GROUP].workers

        row, default_workers = await self.db.write(update)
        if row.operator_site:  # its workers are the operator's: set their number
            await self.operator.scale(row, default_workers)
        else:
            await self.leases.reconcile(name)
        return await self.info(who, name)

    async def scale(self, who: Principal, name: str, workers: int, group: str) -> ClusterInfo:
        def change(groups: dict[str, WorkerGroupSpec]) -> None:
            if group not in groups:
                raise InvalidRequest(
                    f"cluster {name} has no worker group {group!r} (it has "
                    f"{', '.join(groups)}); add one with cluster.add_group(...)"
                )
            groups[group] = groups[group].model_copy(update={"workers": workers})

        return await self._change_groups(who, name, change)

    async def add_group(
        self, who: Principal, name: str, group: str, spec: WorkerGroupSpec
    ) -> ClusterInfo:
        def change(groups: dict[str, WorkerGroupSpec]) -> None:
            if group in groups:
                raise Conflict(f"cluster {name} has a worker group {group!r} already")
            groups[group] = spec
            fit_defaults(self.config.sites, groups)

        return await self._change_groups(who, name, change)

    async def stop_workers(self, who: Principal, name: str, workers: list[str]) -> ClusterInfo:
        """Adapt's scale_down: these workers go, and their groups' targets shrink. The
        reconcile pass retires them on the scheduler (their results move) and then ends
        their leases; the target shrinks first, so no worker is replaced on the way."""
        return await self._change_groups(who, name, stopping=workers)

    async def set_adapt(self, who: Principal, name: str, bounds: str | None) -> None:
        """Let the gateway adapt the default group within ``bounds`` (see ``adaptive``);
        None: stop adapting, the target stays where it is."""
        row = await self.db.read(store.get_cluster, name, who.owner_filter)
        await self.db.write(store.set_cluster, row.name, adapt=bounds)

    async def heartbeat(self, who: Principal, name: str) -> ClusterInfo:
        def beat(conn: Any) -> ClusterInfo:  # one transaction: clients beat often
            row = store.get_cluster(conn, name, who.owner_filter)
            if row.state in store.LIVE:
                store.set_cluster(conn, name, last_client_seen=self.now())
                row = store.get_cluster(conn, name, None)
            return store.cluster_info(conn, row, self.settings.client_timeout)

        info: ClusterInfo = await self.db.write(beat)
        return info

    async def shutdown(self, who: Principal, name: str) -> ClusterInfo:
        row = await self.db.read(store.get_cluster, name, who.owner_filter)
        if row.state in store.LIVE:
            await self.db.write(
                store.set_cluster, name, state="stopping", reason="closed by its owner"
            )
            if row.operator_site:
                await self.operator.stop(row)
                await self.leases.mark_ended(name, "stopped", "closed by its owner")
            elif self.keeper.manages(name):
                await self.keeper.stop(name, "closed by its owner")
        return await self.info(who, name)
