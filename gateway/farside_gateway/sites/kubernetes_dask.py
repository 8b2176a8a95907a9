"""Interactive Dask clusters on a Kubernetes site as ``DaskCluster`` resources, which
dask-kubernetes' operator turns into a scheduler Deployment and Service and a worker
Deployment (``options.dask_operator``).

The gateway keeps the cluster's row as for any cluster (owner, targets, state), but the
operator runs it: scaling patches ``spec.worker.replicas``; closing deletes the resource;
the operator's own ``idleTimeout`` stops an idle cluster, which the gateway notices as the
resource gone. The scheduler and workers are pods of the site's ``image`` in its
namespace, with its node selector and tolerations; they speak plain TCP inside the cluster
(the operator's schedulers have no TLS), on the operator's fixed port 8786.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kr8s
from kr8s.asyncio.objects import Deployment, Pod, new_class

from farside_protocol.clusters import WorkerGroupSpec

from .kubernetes import MANAGED_BY, KubernetesSite, label_value

log = logging.getLogger(__name__)

#: where the operator points workers (``DASK_SCHEDULER_ADDRESS``); it is not configurable
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
API_VERSION = "kubernetes.dask.org/v1"
COMPONENT = "dask.org/component"  # the operator's label: scheduler or worker

DaskCluster = new_class("DaskCluster", API_VERSION, asyncio=True, namespaced=True)


def _pod_spec(site: KubernetesSite, container: dict[str, Any]) -> dict[str, Any]:
    opts = site.options
    container = {"image": opts.image, **container}
    if opts.image_pull_policy:
        container["imagePullPolicy"] = opts.image_pull_policy
    spec: dict[str, Any] = {"containers": [container], "automountServiceAccountToken": False}
    return {**spec, **site.placement()}


def cluster_manifest(
    site: KubernetesSite, name: str, owner: str, spec: WorkerGroupSpec, idle_timeout: float
) -> dict[str, Any]:
    """The ``DaskCluster`` of a farside cluster (pure: no API call)."""
    memory = str(spec.memory)
    worker = {
        "name": "worker",
        "command": [
            "dask",
            "worker",
            "--name",
            "$(DASK_WORKER_NAME)",
            "--nthreads",
            str(spec.cores),
            "--memory-limit",
            memory,
            "--dashboard-address",
            ":0",
        ],
        "resources": {
            "requests": {"cpu": str(spec.cores), "memory": memory},
            "limits": {"memory": memory},
        },
    }
    scheduler = {
        "name": "scheduler",
        "command": [
            "dask",
            "scheduler",
            "--port",
            str(SCHEDULER_PORT),
            "--dashboard-address",
            f":{DASHBOARD_PORT}",
        ],
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"tcpSocket": {"port": "tcp-comm"}, "periodSeconds": 2},
    }
    selector = {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    ports = [
        {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
        {
            "name": "http-dashboard",
            "protocol": "TCP",
            "port": DASHBOARD_PORT,
            "targetPort": "http-dashboard",
        },
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskCluster",
        "metadata": {
            "name": name,
            "namespace": site.options.namespace,
            "labels": {
                MANAGED_BY: "farside",
                "farside.owner": label_value(owner),
            },
        },
        "spec": {
            "idleTimeout": int(idle_timeout),
            "worker": {"replicas": spec.workers, "spec": _pod_spec(site, worker)},
            "scheduler": {
                "spec": _pod_spec(site, scheduler),
                "service": {"type": "ClusterIP", "selector": selector, "ports": ports},
            },
        },
    }


def scheduler_address(site: KubernetesSite, name: str) -> str:
    host = site.options.dask_scheduler_host
    if not host:
        host = f"{name}-scheduler.{site.options.namespace}.svc.cluster.local"
    return f"tcp://{host}:{SCHEDULER_PORT}"


async def create(site: KubernetesSite, manifest: dict[str, Any]) -> None:
    await DaskCluster(manifest, api=site.api()).create()


async def _get(site: KubernetesSite, name: str) -> Any:
    # new_class makes the class at run time: its classmethods are untyped to mypy
    get: Any = DaskCluster.get
    return await get(name, namespace=site.options.namespace, api=site.api())


async def phase(site: KubernetesSite, name: str) -> str | None:
    """The resource's ``status.phase`` ("Created", "Running", ...); None once it is gone."""
    try:
        found = await _get(site, name)
    except kr8s.NotFoundError:
        return None
    status = found.raw.get("status") or {}
    return str(status.get("phase") or "Pending")


async def scheduler_ready(site: KubernetesSite, name: str) -> bool:
    """Whether the operator's scheduler Deployment has a ready pod (its readiness probe
    says the scheduler listens)."""
    get: Any = Deployment.get  # untyped to mypy, like DaskCluster's
    try:
        found = await get(f"{name}-scheduler", namespace=site.options.namespace, api=site.api())
    except kr8s.NotFoundError:
        return False
    return int((found.raw.get("status") or {}).get("availableReplicas") or 0) > 0


async def scale(site: KubernetesSite, name: str, workers: int) -> None:
    found = await _get(site, name)
    await found.patch({"spec": {"worker": {"replicas": workers}}})


async def delete(site: KubernetesSite, name: str) -> None:
    try:
        found = await _get(site, name)
        await found.delete()
    except kr8s.NotFoundError:
        log.info("DaskCluster %s is gone already", name)


async def pod_logs(site: KubernetesSite, name: str, tail: int) -> list[str]:
    """The last ``tail`` lines of each of the cluster's pods (scheduler first, then the
    workers), each prefixed with its pod, as ``kubectl logs`` would give them."""
    api = site.api()
    selector = {"dask.org/cluster-name": name}
    found = api.async_get(
        "pods", namespace=site.options.namespace, label_selector=selector, raw=True
    )
    # raw, then Pod: on an older API server kr8s may not map "pods" to its Pod class
    pods = [Pod(cast(dict[str, Any], raw), api=api) async for raw in found]
    # the scheduler first, then the workers by name
    pods.sort(
        key=lambda pod: (pod.raw["metadata"]["labels"].get(COMPONENT) != "scheduler", pod.name)
    )
    lines: list[str] = []
    for pod in pods:
        try:
            async for line in pod.logs(tail_lines=tail, timeout=30):
                lines.append(f"[{pod.name}] {line}")
        except kr8s.ServerError as exc:  # e.g. not started yet: its lines come later
            lines.append(f"[{pod.name}] (no output yet: {exc})")
    return lines
