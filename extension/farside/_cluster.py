"""Interactive Dask clusters on farside: :class:`FarsideCluster`.

``gw.new_cluster(...)`` asks the gateway for a cluster: a Dask scheduler beside the gateway
and worker *leases* in the pool, which pilots take up like any job (so brokerage, fair
share and warm pilots apply to Dask workers too). The object returned is a
``distributed.deploy.Cluster``: ``Client(cluster)``, ``cluster.get_client()``,
``wait_for_workers``, ``scale``, ``adapt`` and the notebook repr work as Dask users expect.
The client reaches the scheduler directly over TLS with the cluster's own certificate.

While the object lives it sends the gateway a heartbeat; a cluster whose heartbeats stop
(the kernel is gone) is stopped once it has no tasks. ``close()`` stops the cluster, unless
it came from ``gw.connect(name)`` (then it only disconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from distributed import Client
from distributed.core import Status, rpc
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.cluster import Cluster
from distributed.security import Security
from tornado.ioloop import PeriodicCallback

from farside_protocol.clusters import (
    DEFAULT_GROUP,
    ClusterCredentials,
    ClusterInfo,
    ClusterRequest,
    ClusterScale,
    GroupAdd,
    WorkerGroupSpec,
    WorkerStop,
    group_of,
)

if TYPE_CHECKING:
    from ._gateway import BaseGateway

log = logging.getLogger(__name__)

__all__ = ["FarsideCluster"]

HEARTBEAT_INTERVAL = 15.0
#: longest ``start`` waits for a cluster that comes up after the gateway answers
CLUSTER_START_TIMEOUT = 300.0


class FarsideAdaptive(Adaptive):
    """``adapt()`` for a farside cluster: it sizes the default worker group; other groups
    (e.g. GPU workers) keep the targets they were given."""

    cluster: FarsideCluster

    async def workers_to_close(self, target: int) -> list[str]:
        names = await super().workers_to_close(target)
        return [n for n in names if group_of(n) == DEFAULT_GROUP]

    async def scale_down(self, workers: Iterable[str]) -> None:  # type: ignore[override]
        """Tell the gateway, which shrinks the target, retires the workers on the scheduler
        (their results move) and ends their leases, in that order. Dask's own Adaptive
        retires first and tells the cluster after: a worker closed in between would look
        lost, and be replaced."""
        names = list(workers)
        if names:
            await self.cluster.scale_down(names)

    async def scale_up(self, n: int) -> None:  # type: ignore[override]
        others = sum(g.spec.workers for g in self.cluster.info.groups if g.name != DEFAULT_GROUP)
        await self.cluster._scale_async(max(0, n - others), DEFAULT_GROUP)


class FarsideCluster(Cluster):
    """A Dask cluster whose scheduler the farside gateway runs and whose workers are pilots.

    Made by :meth:`farside.Gateway.new_cluster` or :meth:`farside.Gateway.connect`.
    """

    @classmethod
    def start(cls, gateway: BaseGateway, request: ClusterRequest, **options: Any) -> FarsideCluster:
        """Ask the gateway for a new cluster and connect to it once it runs (``options``: the
        constructor's, e.g. ``shutdown_on_close``)."""
        info = gateway._api.post("/clusters", request, ClusterInfo)
        # a cluster that another system runs (a Kubernetes site's Dask operator) comes up
        # after the answer; the gateway's own schedulers are running when it answers
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        while info.state == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
            info = gateway._api.get(f"/clusters/{info.name}", ClusterInfo)
        return cls(gateway, info, **options)

    def __init__(
        self,
        gateway: BaseGateway,
        info: ClusterInfo,
        *,
        shutdown_on_close: bool = True,
        asynchronous: bool = False,
        loop: Any = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        if info.state != "running" or not info.scheduler_address:
            raise RuntimeError(f"cluster {info.name} is {info.state}: {info.reason or ''}")
        self.gateway = gateway
        self.info = info
        self.shutdown_on_close = shutdown_on_close
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()
        creds = gateway._api.get(f"/clusters/{info.name}/credentials", ClusterCredentials)
        self._dashboard_ticket = creds.dashboard_ticket
        if creds.tls_cert:
            self.security = Security(
                tls_ca_file=creds.tls_cert,
                tls_client_cert=creds.tls_cert,
                tls_client_key=creds.tls_key,
                require_encryption=True,
            )
        else:  # a cluster the Dask operator runs: plain TCP inside its Kubernetes cluster
            self.security = Security()
        super().__init__(asynchronous=asynchronous, loop=loop, name=info.name)
        self.scheduler_comm = rpc(
            info.scheduler_address,
            connection_args=self.security.get_connection_args("client"),
        )
        # several beats within the gateway's patience, so one lost beat does not matter
        interval = heartbeat_interval or min(HEARTBEAT_INTERVAL, info.client_timeout / 4)
        self.periodic_callbacks["farside-heartbeat"] = PeriodicCallback(
            self._heartbeat, interval * 1000
        )
        if asynchronous:
            self._started: asyncio.Future[None] | None = asyncio.ensure_future(self._start())
        else:
            self._started = None
            self._loop_runner.start()
            try:
                self.sync(self._start)
            except BaseException:
                self.close()
                raise

    def __await__(self) -> Any:
        async def started() -> FarsideCluster:
            if self._started is not None:
                await self._started
            return self

        return started().__await__()

    # ------------------------------------------------------------ what Dask asks of us

    @property
    def scheduler_address(self) -> str:
        return self.info.scheduler_address or "<Not Connected>"

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard through the gateway, with a ticket that lets a browser in (for a
        day, this cluster only); the gateway serves it to the owner alone."""
        link = self.info.dashboard_link
        if not link or not self._dashboard_ticket:
            return link
        return f"{link}?{urlencode({'ticket': self._dashboard_ticket})}"

    @property
    def workers(self) -> dict[str, Any]:
        """Worker leases not yet ended, by Dask worker name (what ``Adaptive`` plans with)."""
        return {w.name: w for w in self.info.workers if not w.state.terminal}

    def scale(self, n: int, group: str = DEFAULT_GROUP) -> Any:
        """Ask for ``n`` workers in ``group``; surplus workers are retired first, so their
        results move to the others."""
        if self.called_from_running_loop:
            return self._scale_async(n, group)
        self._set_info(self._post("/scale", ClusterScale(workers=n, group=group)))
        return None

    async def _scale_async(self, n: int, group: str) -> None:
        info = await asyncio.to_thread(self._post, "/scale", ClusterScale(workers=n, group=group))
        self._set_info(info)

    async def scale_down(self, workers: list[str]) -> None:
        """Stop these workers: the gateway retires them on the scheduler, then ends their
        leases, and takes them off their groups' targets."""
        info = await asyncio.to_thread(self._post, "/workers/stop", WorkerStop(workers=workers))
        self._set_info(info)

    def adapt(self, Adaptive: type[Adaptive] = FarsideAdaptive, **kwargs: Any) -> Adaptive:
        """Size the default group to the work: ``cluster.adapt(minimum=1, maximum=20)``."""
        return super().adapt(Adaptive=Adaptive, **kwargs)

    def add_group(self, name: str, workers: int = 0, **resources: Any) -> ClusterInfo:
        """Add a worker group with its own resources, e.g.
        ``cluster.add_group("gpu", workers=1, gpus=1, memory="16 GiB")``; scale it with
        ``cluster.scale(n, group="gpu")``."""
        spec = WorkerGroupSpec(workers=workers, **resources)
        self._set_info(self._post("/groups", GroupAdd(name=name, spec=spec)))
        return self.info

    # ------------------------------------------------------------ farside's view

    def _widget(self) -> Any:
        """The notebook display: :class:`farside.widgets.ClusterWidget` (None without
        ipywidgets, then Dask's HTML repr is shown)."""
        cached = getattr(self, "_farside_widget", None)
        if cached is not None:
            return cached
        dask_widget = super()._widget()
        if dask_widget is None:
            return None
        from ._cluster_widget import ClusterWidget

        self._farside_widget = ClusterWidget(self, dask_widget)
        return self._farside_widget

    def refresh(self) -> ClusterInfo:
        """The gateway's view now: groups, worker leases with sites, states and errors."""
        self._set_info(self.gateway._api.get(f"/clusters/{self.name}", ClusterInfo))
        return self.info

    def workers_info(self) -> list[dict[str, Any]]:
        """Each worker lease as a dict: name, group, job id, state, site, and why it ended."""
        return [w.model_dump(mode="json") for w in self.refresh().workers]

    def worker_counts(self) -> Counter[tuple[str, str]]:
        """Live and recently ended worker leases by (site, state); no site yet: ``-``."""
        return lease_counts(self.info)

    def logs(self) -> list[str]:
        """Every line the cluster's workers printed, each prefixed with the worker's name."""
        return self.gateway.logs(cluster=self.name)

    def _post(self, path: str, body: Any) -> ClusterInfo:
        return self.gateway._api.post(f"/clusters/{self.name}{path}", body, ClusterInfo)

    def _set_info(self, info: ClusterInfo) -> None:
        self.info = info

    async def _heartbeat(self) -> None:
        try:
            info = await asyncio.to_thread(
                self.gateway._api.request, "POST", f"/clusters/{self.name}/heartbeat"
            )
            self._set_info(ClusterInfo.model_validate_json(info.content))
        except Exception as exc:  # the next beat tries again; the gateway allows minutes
            log.warning("cluster %s: heartbeat failed: %s", self.name, exc)

    # ------------------------------------------------------------ closing

    def get_client(self, set_as_default: bool = True) -> Client:
        """A ``distributed.Client`` of this cluster: the one made here before while it is
        open, else a new one. ``close()`` closes the clients made here."""
        for client in self._clients:
            if client.status not in ("closing", "closed"):
                return client
        client = Client(self, set_as_default=set_as_default, asynchronous=self.asynchronous)
        self._clients.add(client)
        return client

    def close(self, timeout: float | None = None) -> Any:
        """Close the clients made by ``get_client``, then stop (or leave) the cluster."""
        if not self.asynchronous:
            for client in list(self._clients):
                with contextlib.suppress(Exception):
                    client.close()
            self._clients.clear()
        return super().close(timeout)

    async def _close(self) -> None:
        if self.status.name == "closed":
            return
        # closing before the scheduler goes: a Client(cluster) then closes itself when its
        # connection drops, instead of reconnecting with a traceback a second
        self.status = Status.closing
        for client in list(self._clients):
            if client.asynchronous:
                with contextlib.suppress(Exception):
                    await client.close()
        for pc in self.periodic_callbacks.values():
            pc.stop()
        if self.shutdown_on_close and not self.gateway.closed:
            with contextlib.suppress(Exception):
                info = await asyncio.to_thread(
                    self.gateway._api.request, "DELETE", f"/clusters/{self.name}"
                )
                self._set_info(ClusterInfo.model_validate_json(info.content))
        await super()._close()

    def shutdown(self) -> None:
        """Stop the cluster on the gateway, whichever way this object was made."""
        self.shutdown_on_close = True
        self.close()

    def __repr__(self) -> str:
        live = sum(1 for w in self.info.workers if not w.state.terminal)
        return (
            f"<FarsideCluster {self.name!r} {self.info.state} {self.scheduler_address} "
            f"workers={len(self.scheduler_info.get('workers', {}))}/{live}>"
        )


def lease_counts(info: ClusterInfo, waiting: str = "-") -> Counter[tuple[str, str]]:
    """A cluster's worker leases by (site, state); a lease with no site yet: ``waiting``."""
    return Counter((w.site or waiting, w.state.value) for w in info.workers)


def group_spec(
    workers: int,
    cores: int,
    memory: int | str | None,
    walltime: int | str | None,
    gpus: int,
    gpu_model: str | None,
    site: str | list[str] | None,
    env: str | None,
) -> WorkerGroupSpec:
    """A worker group from ``new_cluster``'s keywords (sites may be one name or a list)."""
    values: dict[str, Any] = {
        "workers": workers,
        "cores": cores,
        "gpus": gpus,
        "gpu_model": gpu_model,
        "env": env,
        "sites": [site] if isinstance(site, str) else list(site or []),
    }
    # left out, they are the gateway's to choose (a default that the sites can offer)
    if memory is not None:
        values["memory"] = memory
    if walltime is not None:
        values["walltime"] = walltime
    return WorkerGroupSpec(**values)
