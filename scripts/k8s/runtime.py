"""How the node agent runs a pod's containers: the interface, and the process runtime.

``node_agent.py`` drives pods through the API (phases, readiness, deletion); a *runtime*
turns a pod into running processes. Two exist, chosen per agent with ``--runtime``:

* :class:`ProcessRuntime` (``process``, the default): each container's ``command`` +
  ``args`` as a plain process of this host; images, volumes and probes are ignored.
* ``image_runtime.BuildahRuntime`` (``buildah``): each container inside its image's root
  file system through ``buildah run``, with volumes, service discovery and probes.

Both resolve a container's environment the same way (:func:`container_env`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import kr8s

HOST_IP = "127.0.0.1"
Pod = dict[str, Any]
# NodeAgent.call: (method, url, namespace=None, body=..., **httpx options) -> decoded JSON
Call = Callable[..., Awaitable[Any]]


class PodError(Exception):
    """The pod cannot run: it fails, its containers terminated with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PodWaiting(PodError):
    """Something the pod needs (a secret, a claim) does not exist yet: it stays Pending.

    A kubelet keeps retrying such pods, so a chart may create a pod before its secret.
    """


@dataclass
class Started:
    """One running container: the process the agent waits for and signals."""

    name: str  # the container's name in the pod
    proc: asyncio.subprocess.Process
    handle: str = ""  # the runtime's own name for it (buildah: the working container)
    run_options: list[str] = field(default_factory=list)  # buildah: reused by exec probes


class Runtime(Protocol):
    kind: str  # the node's farside.dev/node-agent label
    version: str  # the node's nodeInfo.containerRuntimeVersion
    probes: bool  # whether readinessProbes are run (else a container is Ready once started)

    async def start(self, pod: Pod, log_dir: Path) -> list[Started]:
        """Start every container, or none: raise PodError (or PodWaiting to retry later)."""
        ...

    def signal(self, started: Started, sig: signal.Signals) -> None: ...

    async def probe(self, pod: Pod, started: Started, probe: dict[str, Any]) -> bool: ...

    async def ended(self, started: list[Started]) -> None:
        """The containers' processes are gone: release what they held."""
        ...

    async def forget(self, pod: Pod) -> None:
        """The pod is deleted: drop what was kept for it (its volumes)."""
        ...

    async def cleanup(self) -> None:
        """At start and at shutdown: remove what earlier runs of the agent left."""
        ...

    async def duties(self) -> None:
        """Work beside the pods for as long as the agent runs (may return at once)."""
        ...


class ProcessRuntime:
    """Today's node agent: containers as host processes, as the agent's user."""

    kind = "process"
    version = "process://host"
    probes = False

    def __init__(self, call: Call) -> None:
        self.call = call

    async def start(self, pod: Pod, log_dir: Path) -> list[Started]:
        started: list[Started] = []
        try:
            for container in pod["spec"]["containers"]:
                proc = await self.spawn(pod, container, log_dir)
                started.append(Started(container["name"], proc))
        except BaseException:
            await kill_all(started, self)  # all or none: no half-started pod lingers
            raise
        return started

    async def spawn(
        self, pod: Pod, container: dict[str, Any], log_dir: Path
    ) -> asyncio.subprocess.Process:
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise ValueError(
                f"container {container['name']!r} has no command; this node agent ignores "
                "images, so it needs the command to run on the host"
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "HOSTNAME": pod["metadata"]["name"],
        }
        env.update(await container_env(self.call, pod, container))
        cwd = container.get("workingDir")
        if cwd:
            os.makedirs(cwd, exist_ok=True)
        with container_log(log_dir, pod, container).open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, started: Started, sig: signal.Signals) -> None:
        signal_group(started.proc.pid, sig)

    async def probe(self, pod: Pod, started: Started, probe: dict[str, Any]) -> bool:
        return True

    async def ended(self, started: list[Started]) -> None:
        return None

    async def forget(self, pod: Pod) -> None:
        return None

    async def cleanup(self) -> None:
        return None

    async def duties(self) -> None:
        return None


async def kill_all(started: list[Started], runtime: Runtime) -> None:
    for one in started:
        runtime.signal(one, signal.SIGKILL)
    await asyncio.gather(*(one.proc.wait() for one in started))


def log_path(log_dir: Path, namespace: str, pod: str, container: str) -> Path:
    """Where a container's output goes (and where ``kubelet_logs`` reads it)."""
    return log_dir / f"{namespace}_{pod}" / f"{container}.log"


def container_log(log_dir: Path, pod: Pod, container: dict[str, Any]) -> Path:
    meta = pod["metadata"]
    path = log_path(log_dir, meta["namespace"], meta["name"], container["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------- the environment


class Objects:
    """Secrets and config maps of one namespace, each read once per pod start."""

    def __init__(self, call: Call, namespace: str) -> None:
        self.call = call
        self.namespace = namespace
        self.seen: dict[tuple[str, str], dict[str, bytes] | None] = {}

    async def data(self, kind: str, name: str, optional: bool = False) -> dict[str, bytes]:
        """The decoded keys of ``secrets``/``configmaps`` ``name``; {} if optional and absent."""
        if (kind, name) not in self.seen:
            self.seen[kind, name] = await self._read(kind, name)
        found = self.seen[kind, name]
        if found is None:
            if optional:
                return {}
            raise PodWaiting(
                "CreateContainerConfigError", f"{kind[:-1]} {self.namespace}/{name} not found"
            )
        return found

    async def _read(self, kind: str, name: str) -> dict[str, bytes] | None:
        obj = await get_or_none(self.call, f"{kind}/{name}", self.namespace)
        if obj is None:
            return None
        if kind == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def key(self, kind: str, ref: dict[str, Any]) -> str | None:
        """A ``secretKeyRef``/``configMapKeyRef``'s value; None when optional and absent."""
        optional = bool(ref.get("optional"))
        data = await self.data(kind, ref["name"], optional)
        if ref["key"] not in data:
            if optional:
                return None
            raise PodWaiting(
                "CreateContainerConfigError",
                f"key {ref['key']!r} not in {kind[:-1]} {self.namespace}/{ref['name']}",
            )
        return data[ref["key"]].decode(errors="replace")


async def get_or_none(call: Call, url: str, namespace: str | None) -> Any:
    try:
        return await call("GET", url, namespace=namespace)
    except kr8s.ServerError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise


async def container_env(
    call: Call,
    pod: Pod,
    container: dict[str, Any],
    objects: Objects | None = None,
    expand_with: dict[str, str] | None = None,
) -> dict[str, str]:
    """``envFrom``, then ``env`` (later wins, as a kubelet has it), secrets read through the API.

    With ``expand_with`` (the image runtime's Service variables), ``$(VAR)`` in a literal
    ``value`` is expanded from those and the variables defined before it, as a kubelet
    does; the process runtime has never expanded them.
    """
    objects = objects or Objects(call, pod["metadata"]["namespace"])
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for kind, ref_key in (("secrets", "secretRef"), ("configmaps", "configMapRef")):
            if ref_key in source:
                ref = source[ref_key]
                data = await objects.data(kind, ref["name"], bool(ref.get("optional")))
                for key, raw in data.items():
                    env[source.get("prefix", "") + key] = raw.decode(errors="replace")
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        value: str | None
        if "secretKeyRef" in source:
            value = await objects.key("secrets", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = await objects.key("configmaps", source["configMapKeyRef"])
        else:
            value = env_value(pod, container, var)
            if expand_with is not None and "valueFrom" not in var:
                value = expand_refs(value, {**expand_with, **env})
        if value is not None:
            env[var["name"]] = value
    return env


def expand_refs(text: str, env: dict[str, str]) -> str:
    """A kubelet's ``$(VAR)`` expansion: ``$$`` is a ``$``, unknown references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def env_value(pod: Pod, container: dict[str, Any], var: dict[str, Any]) -> str:
    if "valueFrom" not in var:
        return str(var.get("value", ""))
    source = var["valueFrom"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], f"env {var['name']}")
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        kind, _, resource = ref["resource"].partition(".")
        return str(container.get("resources", {}).get(kind, {}).get(resource, "0"))
    raise ValueError(
        f"env {var['name']}: this node agent supports only fieldRef, resourceFieldRef, "
        "secretKeyRef and configMapKeyRef sources"
    )


def field_value(pod: Pod, path: str, what: str) -> str:
    """A downward-API ``fieldRef``'s value, for an env var or a file."""
    meta, spec = pod["metadata"], pod["spec"]
    for prefix, table in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['"):
            return str(meta.get(table, {}).get(path[len(prefix) + 2 : -2], ""))
    fields = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": HOST_IP,
        "status.hostIP": HOST_IP,
    }
    if path not in fields:
        raise ValueError(f"{what}: unsupported fieldRef {path!r}")
    return str(fields[path])


# ---------------------------------------------------------------------- processes


def start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return ""


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
