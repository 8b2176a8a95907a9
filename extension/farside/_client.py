"""The public :class:`farside.Gateway`: the connection of :mod:`._gateway` with the
shortcuts to what runs on it (tasks, workflows, offloaded Dask graphs, Dask clusters), and
:func:`farside.get_gateway`.

It sits above the modules it reaches: they take the connection (a
:class:`~._gateway.BaseGateway`), and none of them imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from farside_protocol.clusters import ClusterInfo, ClusterList, ClusterRequest
from farside_protocol.workflows import WorkflowInfo

from . import _gateway
from ._dask_config import cluster_setting
from ._futures import FarsideFuture, MapResult
from ._gateway import BaseGateway
from ._profile import task_defaults
from ._task import Task
from ._workflow import WorkflowRun, find_run, runs

if TYPE_CHECKING:
    from ._cluster import FarsideCluster

__all__ = ["Gateway", "get_gateway"]

T = TypeVar("T")


class Gateway(BaseGateway):
    """A connection to a farside gateway.

    ``url`` and ``token`` come from the arguments, else ``FARSIDE_GATEWAY_URL`` and
    ``FARSIDE_TOKEN``, else the local platform's ``client.json`` written by ``farside up``.
    The gateway is asked ``whoami`` at once, so a wrong address or token fails here.

    >>> gw = farside.Gateway()               # doctest: +SKIP
    >>> gw.whoami().name                     # doctest: +SKIP
    'alice'
    >>> [j.state for j in gw.jobs(limit=3)]  # doctest: +SKIP
    [<JobState.FINISHED: 'finished'>, ...]
    """

    # -------------------------------------------------------------- tasks

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> FarsideFuture[T]:
        """Run ``fn(*args, **kwargs)`` remotely with default resources (see :func:`task`)."""
        return Task(fn, gateway=self).submit(*args, **kwargs)

    def map(self, fn: Callable[..., T], /, *iterables: Iterable[Any]) -> MapResult[T]:
        """Run ``fn`` on each element (zipped across ``iterables``), results in order."""
        return Task(fn, gateway=self).map(*iterables)

    def offload(self, dsk: Any, keys: Any, **options: Any) -> Any:
        """A Dask scheduler that runs the graph as jobs in the pool:
        ``dask.compute(x, scheduler=gw.offload)``.

        The graph is cut into one job per chain of tasks; intermediate values move between
        jobs through the gateway, never through this notebook, and pilots need nothing but
        the gateway's HTTPS. ``options`` (or the ``farside.offload`` Dask config) take the
        resources of ``@farside.task`` (``cores``, ``memory``, ``walltime``, ``gpus``,
        ``sites``, ...) for every job, and ``group`` to name the jobs' group (default
        ``offload-<random>``). A failed task's exception is raised here.

        >>> total, = dask.compute((x + x.T).sum(), scheduler=gw.offload)  # doctest: +SKIP
        """
        from ._offload import offload  # needs dask: the dask extra

        return offload(self, dsk, keys, **options)

    def compute(self, *collections: Any, **options: Any) -> tuple[Any, ...]:
        """``dask.compute(*collections, scheduler=self.offload, **options)``: a tuple of
        results, one per collection (see :meth:`offload`). ``progress=True`` shows a bar
        of the jobs as they end; so does ``with dask.diagnostics.ProgressBar():``, of tasks.

        >>> counts, = gw.compute(bag.frequencies(), memory="2 GiB")  # doctest: +SKIP
        """
        from dask.base import compute

        results = compute(*collections, scheduler=self.offload, **options)  # type: ignore[no-untyped-call]
        return tuple(results)

    # -------------------------------------------------------------- workflows

    def workflows(self, name: str | None = None, limit: int = 100) -> list[WorkflowInfo]:
        """Your workflow runs, newest first (``name``: one workflow's runs)."""
        return runs(self, name, limit)

    def workflow(self, name_or_id: str | int) -> WorkflowRun[Any]:
        """A workflow run by id, or the newest run of the workflow of that name: reconnect
        to it from any kernel (``.result()``, ``.progress()``, ``.pause()``, ...)."""
        return find_run(self, name_or_id)

    # -------------------------------------------------------------- Dask clusters

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
        return FarsideCluster.start(
            self, request, shutdown_on_close=shutdown_on_close, asynchronous=asynchronous
        )

    def clusters(self, ended: bool = False) -> list[ClusterInfo]:
        """Your clusters (``ended=True``: stopped ones too), newest first."""
        params = {"ended": "true"} if ended else None
        return self._api.get("/clusters", ClusterList, params=params).clusters

    def connect(
        self, name: str, *, shutdown_on_close: bool = False, asynchronous: bool = False
    ) -> FarsideCluster:
        """Reconnect to a running cluster, e.g. from another kernel; closing this object
        leaves the cluster running unless ``shutdown_on_close=True``."""
        from ._cluster import FarsideCluster  # needs distributed: the dask extra

        info = self._api.get(f"/clusters/{name}", ClusterInfo)
        return FarsideCluster(
            self, info, shutdown_on_close=shutdown_on_close, asynchronous=asynchronous
        )


# a default made for a task or a widget is a farside.Gateway too
_gateway.make_defaults_with(Gateway)


def get_gateway() -> Gateway:
    """The default gateway: the newest open one, else a new one from the configuration."""
    # the default is always this class: get_gateway makes it, and the client makes no
    # BaseGateway of its own
    return cast(Gateway, _gateway.get_gateway())
