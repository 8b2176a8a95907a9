"""The Dask-cluster half of :class:`farside.Gateway`: ``new_cluster``, ``clusters``,
``connect`` (kept apart so that the Gateway's module stays about connections and jobs)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from ._dask_config import cluster_setting
from ._http import Api
from ._profile import task_defaults

if TYPE_CHECKING:
    from farside_protocol.clusters import ClusterInfo

    from ._cluster import FarsideCluster
    from ._gateway import Gateway


#: longest new_cluster waits for a cluster that comes up after the gateway answers
CLUSTER_START_TIMEOUT = 300.0


class ClusterMethods:
    """Mixed into :class:`farside.Gateway`."""

    _api: Api

    def new_cluster(
        self,
        workers: int | None = None,
        *,
        cores: int | None = None,
        memory: int | str | None = None,
        walltime: int | str | None = None,
        gpus: int | None = None,
        gpu_model: str | None = None,
        site: str | list[str] | None = None,
        env: str | None = None,
        groups: dict[str, dict[str, Any]] | None = None,
        idle_timeout: float | None = None,
        shutdown_on_close: bool = True,
        asynchronous: bool = False,
    ) -> FarsideCluster:
        """Start a Dask cluster whose workers are pilots: a ``distributed.deploy.Cluster``.

        ``workers`` of ``cores`` threads and ``memory`` each form the default group
        (memory and walltime left out: 2 GiB and 8 h, or the most the sites offer). What
        is left out comes from Dask's configuration first (``farside.cluster.*``: see
        ``farside.yaml``), as dask-gateway's ``gateway.cluster.options`` do;
        ``groups`` adds more by name, e.g. ``groups={"gpu": dict(workers=1, gpus=1)}``
        (GPU workers carry the Dask resource ``GPU``). A JupyterHub profile's ``env`` and
        ``gpus`` are the defaults, as for tasks.

        >>> cluster = gw.new_cluster(workers=4, cores=1, memory="2 GiB")  # doctest: +SKIP
        >>> client = cluster.get_client()                                 # doctest: +SKIP
        """
        from farside_protocol.clusters import ClusterInfo, ClusterRequest

        from ._cluster import FarsideCluster, group_spec  # needs distributed: the dask extra

        profile = task_defaults()
        workers = cluster_setting("workers", workers) or 0
        cores = cluster_setting("cores", cores) or 1
        memory = cluster_setting("memory", memory)
        walltime = cluster_setting("walltime", walltime)
        gpu_model = cluster_setting("gpu_model", gpu_model)
        site = cluster_setting("site", site)
        env = cluster_setting("env", env)
        env = env if env is not None else profile.get("env")
        gpus = cluster_setting("gpus", gpus)
        gpus = gpus if gpus is not None else profile.get("gpus", 0)
        default = group_spec(workers, cores, memory, walltime, gpus, gpu_model, site, env)
        request = ClusterRequest(
            default=default,
            groups={name: {"env": env, **spec} for name, spec in (groups or {}).items()},
            idle_timeout=cluster_setting("idle_timeout", idle_timeout),
        )
        info = self._api.post("/clusters", request, ClusterInfo)
        # a cluster that another system runs (a Kubernetes site's Dask operator) comes up
        # after the answer; the gateway's own schedulers are running when it answers
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        while info.state == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
            info = self._api.get(f"/clusters/{info.name}", ClusterInfo)
        return FarsideCluster(
            cast("Gateway", self),
            info,
            shutdown_on_close=shutdown_on_close,
            asynchronous=asynchronous,
        )

    def clusters(self, ended: bool = False) -> list[ClusterInfo]:
        """Your clusters (``ended=True``: stopped ones too), newest first."""
        from farside_protocol.clusters import ClusterList

        params = {"ended": "true"} if ended else None
        return self._api.get("/clusters", ClusterList, params=params).clusters

    def connect(
        self, name: str, *, shutdown_on_close: bool = False, asynchronous: bool = False
    ) -> FarsideCluster:
        """Reconnect to a running cluster, e.g. from another kernel; closing this object
        leaves the cluster running unless ``shutdown_on_close=True``."""
        from farside_protocol.clusters import ClusterInfo

        from ._cluster import FarsideCluster

        info = self._api.get(f"/clusters/{name}", ClusterInfo)
        return FarsideCluster(
            cast("Gateway", self),
            info,
            shutdown_on_close=shutdown_on_close,
            asynchronous=asynchronous,
        )
