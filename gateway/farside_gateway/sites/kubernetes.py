"""The ``kubernetes`` site: each pilot is one Pod, created through the Kubernetes API.

The batch id is the pod's name; the pilot reads it from ``FARSIDE_PILOT_BATCH_ID``, which
the pod sets from ``metadata.name`` through the downward API. Pods carry the labels
``app.kubernetes.io/managed-by=farside``, ``farside.site=<site>`` and
``farside.pilot=<pilot id>``, so ``kubectl get pods -l farside.site=<site>`` lists a site's
pilots, and :meth:`KubernetesSite.observe` lists them in one request per pass.

The container runs ``options.command`` (default: this gateway's own
``python -m farside_pilot``, which is right only where pods are processes of the gateway's
host, as on the project's test cluster); on a real cluster set ``image`` to an image with
farside installed and ``command`` to its pilot command. A pilot's output is the container's
log (``kubectl logs <pod>``; on the test cluster, a file the node agent writes).

Finished pods are deleted ``finished_pod_ttl`` seconds after they are first seen finished
(Kubernetes keeps bare pods forever); why each ended is remembered for the provisioner.
Talks to the API with kr8s (async). See ``docs/how-to/kubernetes.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import httpx
import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Pod
from pydantic import BaseModel, ConfigDict, Field

from farside_protocol import ConfigurationError, env

from .base import BatchState, BatchStatus, PilotLaunch, Site, SubmitError

log = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
SITE_LABEL = "farside.site"
PILOT_LABEL = "farside.pilot"
_FINISHED = ("Succeeded", "Failed")
_REMEMBERED = 10_000  # reasons kept for pods deleted before the provisioner asked


class Toleration(BaseModel):
    """One pod toleration, spelled as in a pod spec."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: str | None = Field(None, description="Taint key; none with `Exists`: every taint.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="`Equal` or `Exists`.")
    value: str | None = Field(None, description="Taint value (with `Equal`).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect tolerated; none: every effect."
    )
    toleration_seconds: int | None = Field(
        None, alias="tolerationSeconds", description="With `NoExecute`: how long it stays."
    )


class KubernetesOptions(BaseModel):
    """``options`` of a ``kubernetes`` site."""

    model_config = ConfigDict(extra="forbid")

    kubeconfig: str | None = Field(
        None,
        description="Path of a kubeconfig file; default: $KUBECONFIG or ~/.kube/config, "
        "else the pod's service account (the gateway running in the cluster).",
    )
    context: str | None = Field(None, description="kubeconfig context; default: the current.")
    namespace: str = Field("default", description="Namespace of the pilot pods.")
    image: str = Field(
        "farside-pilot",
        description="Container image with farside installed. The test cluster's node agent "
        "ignores it.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="imagePullPolicy; default: the cluster's."
    )
    command: list[str] | None = Field(
        None,
        description="Pilot command in the container; default: this gateway's "
        "`python -m farside_pilot` (only right where pods run on the gateway's host).",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment (e.g. FARSIDE_PILOT_LOG_LEVEL); the FARSIDE_* "
        "variables the gateway sets win.",
    )
    workdir: str | None = Field(
        None,
        description="Pilot scratch directory in the container; default: the gateway's "
        "per-pilot directory (right only where pods run on the gateway's host).",
    )
    service_account: str | None = Field(None, description="serviceAccountName of the pods.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector: node labels a pilot's node must have."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the pods tolerate."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra pod labels (farside's own win)."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")
    requests: dict[str, str] = Field(
        default_factory=dict,
        description="Resource requests over those from the slot (cpu = cores, memory, GPUs); "
        "an empty value removes one.",
    )
    limits: dict[str, str] = Field(
        default_factory=dict,
        description="Resource limits over those from the slot (same as the requests); an "
        'empty value removes one, e.g. `cpu = ""` for no CPU limit.',
    )
    gpu_resource: str = Field(
        "nvidia.com/gpu", description="Extended resource that counts the slot's GPUs."
    )
    grace_period: int = Field(
        30, ge=0, description="Seconds between SIGTERM and SIGKILL when a pilot pod is deleted."
    )
    finished_pod_ttl: float = Field(
        60.0,
        ge=0,
        description="Seconds a finished pilot pod is kept (for kubectl) before "
        "the gateway deletes it.",
    )
    dask_operator: bool = Field(
        False,
        description="Interactive Dask clusters asked of this site alone become `DaskCluster` "
        "resources run by dask-kubernetes' operator (installed in the cluster), with the "
        "scheduler and workers as pods of `image` (which needs `dask[distributed]`), instead "
        "of a scheduler in the gateway and workers on pilots.",
    )
    dask_scheduler_host: str | None = Field(
        None,
        description="With `dask_operator`: the host clients reach the schedulers at (port "
        "8786); default: the scheduler Service's cluster DNS name "
        "(`<cluster>-scheduler.<namespace>.svc.cluster.local`).",
    )


@dataclass
class KubernetesSite(Site):
    Options = KubernetesOptions
    OUT_OF_MEMORY = ("OOMKilled",)  # a container's termination reason
    options: KubernetesOptions = field(init=False)
    _api: kr8s.asyncio.Api | None = field(default=None, init=False)
    _collector: asyncio.Task[None] | None = field(default=None, init=False)
    # pod name -> when first seen finished, and why pods the collector deleted ended
    _finished_since: dict[str, float] = field(default_factory=dict, init=False)
    _ended: dict[str, str] = field(default_factory=dict, init=False)

    # ------------------------------------------------------------ the pod

    @property
    def selector(self) -> str:
        return f"{MANAGED_BY}=farside,{SITE_LABEL}={label_value(self.name)}"

    def pod_manifest(self, launch: PilotLaunch) -> dict[str, Any]:
        """The Pod that runs one pilot (pure: no API call)."""
        opts, cfg = self.options, self.config
        variables = {**opts.env, **launch.env}
        workdir = opts.workdir or str(launch.workdir)
        variables[env.PILOT_WORKDIR] = workdir
        container: dict[str, Any] = {
            "name": "pilot",
            "image": opts.image,
            "command": opts.command or launch.command,
            "workingDir": workdir,
            "env": [{"name": k, "value": v} for k, v in sorted(variables.items())]
            + [
                {
                    "name": env.PILOT_BATCH_ID,
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                }
            ],
            "resources": {
                "requests": _resources(cfg.cores, cfg.memory, cfg.gpus, opts, opts.requests),
                "limits": _resources(cfg.cores, cfg.memory, cfg.gpus, opts, opts.limits),
            },
        }
        if opts.image_pull_policy:
            container["imagePullPolicy"] = opts.image_pull_policy
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [container],
            "terminationGracePeriodSeconds": opts.grace_period,
            # pilots talk to the gateway, never to Kubernetes
            "automountServiceAccountToken": False,
        }
        if cfg.walltime:
            spec["activeDeadlineSeconds"] = int(cfg.walltime)
        if opts.service_account:
            spec["serviceAccountName"] = opts.service_account
        spec.update(self.placement())
        labels = {
            **opts.labels,
            MANAGED_BY: "farside",
            SITE_LABEL: label_value(self.name),
            PILOT_LABEL: str(launch.pilot_id),
        }
        metadata: dict[str, Any] = {
            "generateName": f"farside-{_name_part(self.name)}-{launch.pilot_id}-",
            "namespace": opts.namespace,
            "labels": labels,
        }
        if opts.annotations:
            metadata["annotations"] = dict(opts.annotations)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def placement(self) -> dict[str, Any]:
        """The pod spec's ``nodeSelector`` and ``tolerations`` from the options (the same
        for pilot pods and for the Dask operator's pods)."""
        opts = self.options
        spec: dict[str, Any] = {}
        if opts.node_selector:
            spec["nodeSelector"] = dict(opts.node_selector)
        if opts.tolerations:
            spec["tolerations"] = [
                t.model_dump(by_alias=True, exclude_none=True) for t in opts.tolerations
            ]
        return spec

    # ------------------------------------------------------------ plugin interface

    async def start(self) -> None:
        opts = self.options
        where = opts.kubeconfig or "$KUBECONFIG, ~/.kube/config or the in-cluster account"
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._api = await kr8s.asyncio.api(kubeconfig=opts.kubeconfig, context=opts.context)
            for warning in caught:  # e.g. a cluster older than kr8s supports
                log.warning("site %s: %s", self.name, warning.message)
        except Exception as exc:
            raise ConfigurationError(
                f"site {self.name!r}: cannot reach the Kubernetes API (credentials from "
                f"{where}): {exc}. Set options.kubeconfig (or KUBECONFIG) to a kubeconfig "
                "for a running cluster; for the test cluster run scripts/kubernetes.sh."
            ) from exc
        await self._check_namespace()
        self._collector = asyncio.create_task(self._collect_loop(), name=f"pods-{self.name}")

    async def stop(self) -> None:
        """Stop collecting finished pods; pilot pods keep running (like batch jobs)."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None

    async def submit(self, launch: PilotLaunch) -> str:
        pod = Pod(self.pod_manifest(launch), api=self._connected())
        try:
            await pod.create()
        except (kr8s.ServerError, kr8s.APITimeoutError, httpx.HTTPError, OSError) as exc:
            raise SubmitError(f"creating the pilot pod failed: {_message(exc)}") from exc
        return pod.name

    async def observe(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        pods = {pod["metadata"]["name"]: pod for pod in await self._pods()}
        states: dict[str, BatchStatus] = {}
        for batch_id in batch_ids:
            pod = pods.get(batch_id)
            if pod is not None:
                states[batch_id] = pod_status(pod)
            else:
                reason = self._ended.pop(batch_id, f"pod {batch_id} no longer exists")
                states[batch_id] = BatchStatus(BatchState.GONE, reason)
        return states

    async def cancel(self, batch_id: str) -> None:
        meta = {"name": batch_id, "namespace": self.options.namespace}
        pod = Pod({"metadata": meta}, api=self._connected())
        with contextlib.suppress(kr8s.NotFoundError):
            # a grace period, so the pilot gets SIGTERM and says goodbye before SIGKILL
            await pod.delete(grace_period=self.options.grace_period)

    # ------------------------------------------------------------ helpers

    def api(self) -> kr8s.asyncio.Api:
        """The site's Kubernetes API client (after :meth:`start`)."""
        return self._connected()

    def _connected(self) -> kr8s.asyncio.Api:
        if self._api is None:
            raise SubmitError(f"site {self.name!r} is not started (no Kubernetes API client)")
        return self._api

    async def _pods(self) -> list[dict[str, Any]]:
        api = self._connected()
        found = api.async_get(
            "pods", namespace=self.options.namespace, label_selector=self.selector, raw=True
        )
        return [cast(dict[str, Any], pod) async for pod in found]

    async def _check_namespace(self) -> None:
        api, ns = self._connected(), self.options.namespace
        try:
            async with api.call_api("GET", url=f"namespaces/{ns}"):
                return
        except kr8s.ServerError as exc:
            code = exc.response.status_code if exc.response is not None else None
            if code == 404:
                raise ConfigurationError(
                    f"site {self.name!r}: namespace {ns!r} does not exist; create it "
                    f"(kubectl create namespace {ns}) or set options.namespace"
                ) from exc
            if code != 403:
                raise ConfigurationError(
                    f"site {self.name!r}: checking namespace {ns!r} failed: {_message(exc)}"
                ) from exc
        # may not read namespaces (a namespaced account): listing pods is what we need
        try:
            await self._pods()
        except kr8s.ServerError as exc:
            raise ConfigurationError(
                f"site {self.name!r}: may not list pods in namespace {ns!r} "
                f"({_message(exc)}); grant the gateway's account a Role with get, list, "
                "create and delete on pods there"
            ) from exc

    async def _collect_loop(self) -> None:
        interval = min(10.0, max(0.5, self.options.finished_pod_ttl / 2))
        while True:
            try:
                await self._collect(time.monotonic())
            except Exception as exc:  # the API may be briefly away; try again later
                log.warning("site %s: deleting finished pods failed: %s", self.name, exc)
            await asyncio.sleep(interval)

    async def _collect(self, now: float) -> None:
        """Delete pods finished for ``finished_pod_ttl``, remembering why they ended."""
        finished = {}
        for pod in await self._pods():
            if pod.get("status", {}).get("phase") in _FINISHED:
                finished[pod["metadata"]["name"]] = pod
        self._finished_since = {name: self._finished_since.get(name, now) for name in finished}
        for name, since in list(self._finished_since.items()):
            if now - since < self.options.finished_pod_ttl:
                continue
            self._ended[name] = pod_status(finished[name]).reason or "finished"
            while len(self._ended) > _REMEMBERED:
                del self._ended[next(iter(self._ended))]
            with contextlib.suppress(kr8s.NotFoundError):
                await Pod(finished[name], api=self._connected()).delete()
            del self._finished_since[name]


def pod_status(pod: dict[str, Any]) -> BatchStatus:
    """A pod's phase as a :class:`BatchStatus`; an ended pod's reason says why."""
    status = pod.get("status", {})
    phase = status.get("phase", "Pending")
    if phase == "Pending":
        return BatchStatus(BatchState.QUEUED)
    if phase not in _FINISHED:  # Running, or Unknown: the node is out of touch for now
        return BatchStatus(BatchState.RUNNING)
    parts = [phase]
    if status.get("reason"):  # the pod's own: Evicted, DeadlineExceeded, ...
        message = status.get("message")
        parts.append(status["reason"] + (f" ({message})" if message else ""))
    for container in status.get("containerStatuses", []):
        ended = container.get("state", {}).get("terminated")
        if ended:
            parts.append(f"{ended.get('reason', 'terminated')}, exit code {ended.get('exitCode')}")
    return BatchStatus(BatchState.GONE, ": ".join(parts))


def label_value(name: str) -> str:
    """``name`` as a label value: at most 63 characters of ``[A-Za-z0-9_.-]`` (others
    become ``-``; a site name has none), alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", name[:63])
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def _name_part(name: str) -> str:
    """``name`` as part of a pod name (lower case, digits and '-')."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "site"


def _resources(
    cores: int, memory: int, gpus: int, opts: KubernetesOptions, overrides: dict[str, str]
) -> dict[str, str]:
    amounts = {"cpu": str(cores), "memory": str(memory)}
    if gpus:
        amounts[opts.gpu_resource] = str(gpus)
    amounts.update(overrides)
    return {name: value for name, value in amounts.items() if value}


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
