"""The node agent's image runtime (``--runtime buildah``): containers run their images.

Each container runs inside its image's root file system: ``buildah from --pull=never``
makes a working container of the local image, ``buildah run --isolation chroot`` runs it
(buildah sets up /proc, /dev, /etc/resolv.conf; the network is the host's), and
``buildah rm`` removes it when the container ends. Images are never pulled: one that is
not in buildah's local storage fails the pod with ``ErrImageNeverPull``; build it first
(``scripts/images.sh``). Storage is buildah's own, as ``scripts/images.sh`` uses it
(``STORAGE_DRIVER`` defaults to ``vfs``). It needs root.

What a kubelet would do, this does as far as the test cluster needs:

* argv: ``command`` replaces the image's Entrypoint and ``args`` its Cmd; ``$(VAR)``
  references in them and in ``env`` values are expanded. Working directory and user:
  the container's (``workingDir``, ``securityContext.runAsUser``/``runAsGroup`` of the
  container or the pod), else the image's. Environment: the image's, then the Services'
  variables, then the container's (``envFrom`` and ``env``, secrets and config maps read
  through the API).
* Service discovery with host networking, where every pod's IP is 127.0.0.1: the
  Services' variables and host names; see ``discovery.py``.
* Volumes: see ``volumes.py``.
* Readiness: ``httpGet``, ``tcpSocket`` and ``exec`` probes (``exec`` through another
  ``buildah run`` in the same working container). Liveness and startup probes are not
  run; nothing is ever restarted.
* Stopping: ``buildah run`` answers SIGTERM by SIGKILLing the container's process, so
  SIGTERM goes straight to the processes inside the container; after the grace period
  the whole process group gets SIGKILL. A container killed by a signal exits 1 (buildah
  does not pass the signal on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from discovery import discover
from image_files import in_image, numeric_user
from runtime import (
    HOST_IP,
    Call,
    Objects,
    Pod,
    PodError,
    Started,
    container_env,
    container_log,
    expand_refs,
    kill_all,
    signal_group,
)
from volumes import ClaimBinder, Volumes, mounts

log = logging.getLogger("node-agent")


class BuildahError(RuntimeError):
    pass


@dataclass
class Plan:
    """How one container will run, worked out before anything is created."""

    container: dict[str, Any]
    image: str
    config: dict[str, Any]  # the image's OCI config
    argv: list[str]
    user: str  # "" for the image's
    env: dict[str, str]
    owner: tuple[int, int] | None = None  # the user's numbers, once looked up in the image
    targets: dict[str, str] = field(default_factory=dict)  # mountPath -> where it leads


class BuildahRuntime:
    kind = "buildah"
    probes = True

    def __init__(self, call: Call, node: str, state_dir: Path, api_server: str) -> None:
        self.call = call
        self.node = node
        self.prefix = f"k8s_{node}_"  # a node name has no "_": no other node's prefix
        self.version = "buildah://"
        claims = state_dir / "volumes"
        self.volumes = Volumes(call, state_dir / "pod-volumes" / node, claims)
        self.binder = ClaimBinder(call, node, claims)
        self.api_port = urlsplit(api_server).port or 443
        self.env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        self.env.setdefault("STORAGE_DRIVER", "vfs")  # what scripts/images.sh builds into
        self.own_root = os.readlink("/proc/self/root")

    async def buildah(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "buildah",
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise BuildahError(f"buildah {args[0]}: {err.decode(errors='replace').strip()}")
        return out.decode()

    # ------------------------------------------------------------------ starting

    async def start(self, pod: Pod, log_dir: Path) -> list[Started]:
        meta, spec = pod["metadata"], pod["spec"]
        objects = Objects(self.call, meta["namespace"])
        services, hosts = await discover(self.call, pod, self.api_port)
        configs: dict[str, dict[str, Any]] = {}
        plans = []
        for container in spec["containers"]:
            image = container.get("image", "")
            if image not in configs:
                configs[image] = await self.image_config(image)
            plans.append(await self.plan(pod, container, configs[image], objects, services))
        hostname = spec.get("hostname") or meta["name"]
        add_hosts = [f"--add-host={name}:{HOST_IP}" for name in [hostname, *hosts]]
        for alias in spec.get("hostAliases") or []:
            add_hosts += [f"--add-host={name}:{alias['ip']}" for name in alias["hostnames"]]
        created: list[str] = []
        started: list[Started] = []
        try:
            for plan in plans:
                name = f"{self.prefix}{meta['uid']}_{plan.container['name']}"
                await self.buildah("from", "--pull=never", "--name", name, *add_hosts, plan.image)
                created.append(name)
            for plan, name in zip(plans, created, strict=True):
                await self.look_inside(plan, name)
            # the pod's volume files belong to its containers' user, if they share one
            owners = {plan.owner for plan in plans}
            owner = owners.pop() if len(owners) == 1 else None
            paths = await self.volumes.prepare(pod, owner, objects)
            for plan, name in zip(plans, created, strict=True):
                options = ["--isolation", "chroot", "--hostname", hostname]
                if plan.user:
                    options += ["--user", plan.user]
                if plan.container.get("workingDir"):
                    options += ["--workingdir", plan.container["workingDir"]]
                options += [f"--env={k}={v}" for k, v in plan.env.items()]
                options += [f"--volume={v}" for v in mounts(plan.container, paths, plan.targets)]
                log_path = container_log(log_dir, pod, plan.container)
                with log_path.open("ab") as out:
                    proc = await asyncio.create_subprocess_exec(
                        "buildah",
                        "run",
                        *options,
                        name,
                        "--",
                        *plan.argv,
                        env=self.env,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=out,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,  # a group: SIGKILLed as one (by a later agent too)
                    )
                started.append(Started(plan.container["name"], proc, name, options))
        except BaseException:
            await kill_all(started, self)
            await self.remove(created)
            raise
        return started

    async def image_config(self, image: str) -> dict[str, Any]:
        try:
            raw = await self.buildah("inspect", "--type", "image", image)
        except BuildahError as exc:
            if "image not known" not in str(exc):
                raise
            raise PodError(
                "ErrImageNeverPull",
                f"image {image!r} is not on node {self.node}, which never pulls images: "
                "build it here first (scripts/images.sh)",
            ) from exc
        config: dict[str, Any] = json.loads(raw).get("OCIv1", {}).get("config") or {}
        return config

    async def plan(
        self,
        pod: Pod,
        container: dict[str, Any],
        config: dict[str, Any],
        objects: Objects,
        services: dict[str, str],
    ) -> Plan:
        own = await container_env(self.call, pod, container, objects, services)
        env = {"HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"]}
        env.update(services)
        env.update(own)
        command = [expand_refs(a, env) for a in container.get("command") or []]
        args = [expand_refs(a, env) for a in container.get("args") or []]
        if command:  # as a kubelet: a command drops the image's Cmd too
            argv = command + args
        else:
            argv = list(config.get("Entrypoint") or []) + (args or list(config.get("Cmd") or []))
        if not argv:
            raise PodError(
                "CreateContainerError",
                f"container {container['name']!r}: neither it nor its image has a command",
            )
        user = _user(pod, container, config.get("User") or "")
        return Plan(container, container.get("image", ""), config, argv, user, env)

    async def look_inside(self, plan: Plan, name: str) -> None:
        """What only the image's files tell: its user's numbers, where mount paths lead.

        buildah follows an absolute symlink on a mount's path (Debian's /var/run -> /run)
        on the host, not in the image: the mount would land outside the container, and the
        service-account token at /var/run/secrets/... would never be seen. So the mount
        paths are resolved here, within the image.
        """
        root = Path((await self.buildah("mount", name)).strip())
        try:
            plan.owner = numeric_user(root, plan.user or plan.config.get("User") or "0")
            for mount in plan.container.get("volumeMounts", []):
                plan.targets[mount["mountPath"]] = in_image(root, mount["mountPath"])
        finally:
            await self.buildah("umount", name)

    # ------------------------------------------------------------------ running

    def signal(self, started: Started, sig: signal.Signals) -> None:
        inside = self.inside(started.proc.pid)
        if sig == signal.SIGKILL or not inside:
            signal_group(started.proc.pid, sig)
        for pid in inside:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def inside(self, pid: int) -> list[int]:
        """The container's own processes under ``buildah run`` ``pid``.

        Under it are buildah-chroot-runtime (outside the chroot), buildah-chroot-exec (the
        first process inside; it SIGKILLs its child on SIGTERM) and the container's
        processes: those inside the chroot whose parent is inside too.
        """
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                        int(entry)
                    )
        found: list[int] = []
        todo = [pid]
        while todo:
            parent = todo.pop()
            for child in children.get(parent, []):
                if self.chrooted(child) and self.chrooted(parent):
                    found.append(child)
                todo.append(child)
        return found

    def chrooted(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/root") != self.own_root
        except OSError:
            return False

    async def probe(self, pod: Pod, started: Started, probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        container = next(c for c in pod["spec"]["containers"] if c["name"] == started.name)
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = _probe_port(container, get["port"])
                host = get.get("host") or HOST_IP
                url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port}{get.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
                async with httpx.AsyncClient(verify=False, timeout=timeout) as client:
                    response = await client.get(url, headers=headers)
                return 200 <= response.status_code < 400
            if "tcpSocket" in probe:
                sock = probe["tcpSocket"]
                port = _probe_port(container, sock["port"])
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(sock.get("host") or HOST_IP, port), timeout
                )
                writer.close()
                return True
            if "exec" in probe:
                return await self.exec_probe(started, probe["exec"]["command"], timeout)
        except (OSError, TimeoutError, httpx.HTTPError):
            return False
        return True  # a probe of a kind not known here does not hold the pod back

    async def exec_probe(self, started: Started, command: list[str], seconds: float) -> bool:
        proc = await asyncio.create_subprocess_exec(
            "buildah",
            "run",
            *started.run_options,
            started.handle,
            "--",
            *command,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return await asyncio.wait_for(proc.wait(), seconds) == 0
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            return False

    # ------------------------------------------------------------------ cleaning up

    async def ended(self, started: list[Started]) -> None:
        await self.remove([s.handle for s in started])

    async def remove(self, names: list[str]) -> None:
        for name in names:
            try:
                await self.buildah("rm", name)
            except BuildahError as exc:
                log.warning("%s", exc)

    async def forget(self, pod: Pod) -> None:
        self.volumes.forget(pod["metadata"]["uid"])

    async def cleanup(self) -> None:
        self.version = "buildah://" + (await self.buildah("--version")).split()[2]
        listed = await self.buildah("containers", "--format", "{{.ContainerName}}")
        left = [n for n in listed.split() if n.startswith(self.prefix)]
        if left:
            log.info("removing %d working containers left by an earlier agent", len(left))
            await self.remove(left)
        self.volumes.forget_all()

    async def duties(self) -> None:
        await self.binder.run()


def _user(pod: Pod, container: dict[str, Any], image_user: str) -> str:
    """``buildah run --user`` from the security contexts ("" keeps the image's USER)."""
    pod_context = pod["spec"].get("securityContext") or {}
    context = {**pod_context, **(container.get("securityContext") or {})}
    uid, gid = context.get("runAsUser"), context.get("runAsGroup")
    image_uid = image_user.partition(":")[0] or "0"
    if context.get("runAsNonRoot") and (uid == 0 or (uid is None and image_uid in ("0", "root"))):
        raise PodError(
            "CreateContainerConfigError",
            f"container {container['name']!r} has runAsNonRoot and would run as root",
        )
    if uid is None and gid is None:
        return ""
    user = str(uid) if uid is not None else image_uid
    return f"{user}:{gid}" if gid is not None else user


def _probe_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int) or port.isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise OSError(f"no container port named {port!r}")
