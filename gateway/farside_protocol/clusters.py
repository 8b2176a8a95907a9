"""Wire models of interactive Dask clusters (``/clusters``) and of a Dask-worker lease.

A cluster is one Dask scheduler that the gateway runs, plus worker *leases*: jobs of kind
``dask-worker`` in the pool, which pilots fulfil by running a Dask worker against that
scheduler until the lease is cancelled (scale down, cluster stopped) or its walltime ends.
Workers come in named groups (``default``, and e.g. ``gpu``); each group has its own
resources and target count. The scheduler, the workers and the client authenticate each
other with one per-cluster TLS certificate (mutual TLS), handed to the owner by
``GET /clusters/{name}/credentials`` and to pilots inside the lease.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import Field

from .models import MAX_GPUS, Memory, Name, Resources, Walltime, _Strict
from .states import JobState

#: worker group names: short, safe in Dask worker names and in logs
GroupName = str
GROUP_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
DEFAULT_GROUP = "default"
MAX_WORKERS = 1000


def worker_name(group: str) -> str:
    """A new Dask worker's name in ``group``: ``<group>-<8 hex>`` (the lease's job name)."""
    return f"{group}-{secrets.token_hex(4)}"


def group_of(worker_name: str) -> str:
    """The group a worker belongs to, from its name.

    >>> group_of("gpu-3fa2b1c0")
    'gpu'
    """
    return worker_name.rsplit("-", 1)[0]


ClusterState = Literal["starting", "running", "stopping", "stopped", "failed"]


class WorkerGroupSpec(_Strict):
    """The shape of one group's workers and how many of them are wanted."""

    workers: int = Field(0, ge=0, le=MAX_WORKERS, description="target number of workers")
    cores: int = Field(1, ge=1, le=256, description="threads of each Dask worker")
    memory: Memory = Field(2 * 1024**3, description="each worker's memory limit (bytes, '2 GiB')")
    walltime: Walltime = Field(
        8 * 3600, description="longest a worker lease runs; a pilot with less left is not used"
    )
    gpus: int = Field(0, ge=0, le=MAX_GPUS, description="GPUs; workers get the Dask resource GPU")
    gpu_model: str | None = Field(None, max_length=64)
    env: Name | None = Field(None, description="environment the workers need; None: any")
    sites: list[Name] = Field(default_factory=list, description="allowed sites, preferred first")

    def resources(self) -> Resources:
        return Resources(
            cores=self.cores,
            memory=self.memory,
            walltime=self.walltime,
            gpus=self.gpus,
            gpu_model=self.gpu_model,
        )


class ClusterRequest(_Strict):
    """``POST /clusters``: the default group's shape and size, and any further groups."""

    default: WorkerGroupSpec = Field(default_factory=WorkerGroupSpec)
    groups: dict[Name, WorkerGroupSpec] = Field(
        default_factory=dict, description="more worker groups by name, e.g. a GPU group"
    )
    idle_timeout: float | None = Field(
        None,
        gt=0,
        description="seconds without tasks after which the cluster stops; "
        "None: the gateway's default",
    )


class ClusterScale(_Strict):
    workers: int = Field(ge=0, le=MAX_WORKERS)
    group: Name = DEFAULT_GROUP


class GroupAdd(_Strict):
    name: Name
    spec: WorkerGroupSpec


class WorkerStop(_Strict):
    """Stop these workers (Dask worker names, as ``Adaptive.workers_to_close`` gives them);
    each one's group shrinks by one."""

    workers: list[str] = Field(max_length=MAX_WORKERS)


class ClusterWorker(_Strict):
    """One worker lease: its job, where it runs, and why it ended if it did."""

    name: str = Field(description="the Dask worker's name: the lease's job id")
    job_id: int
    group: str
    state: JobState
    site: str | None
    error: str | None = None


class ClusterGroup(_Strict):
    name: str
    spec: WorkerGroupSpec
    failures: int = Field(0, description="leases of this group that ended in an error")


class ClusterInfo(_Strict):
    name: str
    owner: str
    state: ClusterState
    reason: str | None = Field(None, description="why it stopped or failed")
    scheduler_address: str | None
    dashboard_link: str | None = Field(
        description="the dashboard through the gateway (needs the owner's token, or the "
        "ticket of ClusterCredentials in a browser); None: no dashboard"
    )
    groups: list[ClusterGroup]
    workers: list[ClusterWorker] = Field(
        default_factory=list, description="leases not yet ended, then the latest ended ones"
    )
    idle_timeout: float
    client_timeout: float = Field(
        description="without a client heartbeat for this long, an idle cluster stops; "
        "clients beat several times within it"
    )
    created: datetime
    last_client_seen: datetime | None


class ClusterList(_Strict):
    clusters: list[ClusterInfo]


class ClusterLogs(_Strict):
    """The last lines of each of a cluster's workers (pilot clusters: each worker lease's
    job; the Dask operator's: each pod, the scheduler first), prefixed ``[worker] ``."""

    lines: list[str]


class ClusterCredentials(_Strict):
    """The cluster's TLS certificate and key (PEM): present them to reach its scheduler.
    Both empty for a cluster that dask-kubernetes' operator runs (plain TCP in its cluster)."""

    tls_cert: str
    tls_key: str
    dashboard_ticket: str | None = Field(
        None,
        description="opens the dashboard in a browser for a day: dashboard_link?ticket=...",
    )


class DaskWorkerLease(_Strict):
    """The payload of a ``dask-worker`` job: what the pilot's worker needs to join."""

    cluster: str
    group: str
    name: str
    scheduler_address: str
    tls_cert: str
    tls_key: str
    nthreads: int = Field(ge=1)
    memory_limit: int = Field(ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    death_timeout: float = Field(
        60.0, gt=0, description="seconds the worker tries to reach its scheduler before it ends"
    )
    lifetime: float | None = Field(
        None,
        gt=0,
        description="the worker retires gracefully after this many seconds, "
        "before the pilot's walltime watch would kill it",
    )
