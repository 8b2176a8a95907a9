"""farside's process-based node agent for the test cluster. It is NOT a kubelet.

There is no container runtime here: images are ignored, and every container of a pod bound
to this node runs as a plain process of this host (its ``command`` + ``args``, in its
``workingDir``, as the agent's user). What it does do, as a kubelet would through the API:

* registers a Ready ``Node`` (capacity from the flags, labels from ``--label``) and keeps
  its status and ``kube-node-lease`` lease fresh, so the node controller never evicts;
* watches pods whose ``spec.nodeName`` is this node and starts each container with the
  pod's environment: literal ``value``\\ s and downward-API ``fieldRef``\\ s
  (``metadata.name``, ``metadata.namespace``, ``metadata.uid``, ``spec.nodeName``,
  ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``, labels and annotations)
  and ``resourceFieldRef``\\ s; other sources (secrets, config maps) fail the pod;
* reports the pod's phase: ``Running``, then ``Succeeded`` (every container exited 0) or
  ``Failed``, with each container's exit code (128+N for signal N) and reason;
* on deletion sends SIGTERM to each container's process group, SIGKILL after the grace
  period, then removes the pod object, as a kubelet does.

It does not enforce resource limits, pull images, mount volumes, probe, restart containers
or serve ``kubectl logs``/``exec``. Each container's stdout and stderr go to
``<log-dir>/<namespace>_<pod>/<container>.log``.
scripts/kubernetes.sh starts it: ``python scripts/k8s/node_agent.py --kubeconfig K ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import warnings
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import kr8s
import kr8s.asyncio
from kr8s._api import Api

log = logging.getLogger("node-agent")
HOST_IP = "127.0.0.1"
HEARTBEAT = 10.0
MERGE = "application/merge-patch+json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    def __init__(self, api: Api, args: argparse.Namespace) -> None:
        self.api = api
        self.node: str = args.node
        self.args = args
        self.log_dir = Path(args.log_dir)
        self.running: dict[str, asyncio.Task[None]] = {}  # pod uid -> its supervisor
        self.procs: dict[str, list[asyncio.subprocess.Process]] = {}
        self.stopping: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # held, or the loop may drop them
        self.pids_file = Path(args.pids_file) if args.pids_file else None

    async def call(self, method: str, url: str, namespace: str | None = None, **kw: Any) -> Any:
        body = kw.pop("body", None)
        if body is not None:
            kw["content"] = json.dumps(body)
            kw["headers"] = {"Content-Type": kw.pop("content_type", "application/json")}
        async with self.api.call_api(method, url=url, namespace=namespace, **kw) as response:
            return response.json()

    # ------------------------------------------------------------------ the node

    async def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "farside.dev/node-agent": "process",
        }
        labels.update(dict(item.split("=", 1) for item in self.args.label))
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}}
        try:
            await self.call("POST", "nodes", body=node)
        except kr8s.ServerError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
        # labels may have changed since an earlier run; a merge patch keeps others
        patch = {"metadata": {"labels": labels}}
        await self.call("PATCH", f"nodes/{self.node}", body=patch, content_type=MERGE)
        await self.heartbeat()

    async def heartbeat(self) -> None:
        now = _now()
        capacity = {
            "cpu": str(self.args.cpu),
            "memory": str(self.args.memory),
            "pods": str(self.args.pods),
            "ephemeral-storage": "100Gi",
        }
        if self.args.gpus:
            capacity[self.args.gpu_resource] = str(self.args.gpus)
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "NodeAgentReady",
                    "message": "farside process-based node agent (not a kubelet)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                **dict.fromkeys(("kernelVersion", "kubeProxyVersion", "machineID", "bootID"), ""),
                "kubeletVersion": "v1.20.2-farside-node-agent",
                "osImage": "host processes",
                "containerRuntimeVersion": "process://host",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        # the node controller takes a changed Ready heartbeat as a sign of life (no Lease)
        await self.call(
            "PATCH", f"nodes/{self.node}/status", body={"status": status}, content_type=MERGE
        )

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.heartbeat()
            except Exception as exc:  # keep beating: one missed beat is harmless
                log.warning("heartbeat failed: %s", exc)

    # ------------------------------------------------------------------ pods

    async def watch(self) -> None:
        selector = f"spec.nodeName={self.node}"
        while True:  # the API server ends watches after a while; start a new one
            try:
                async for kind, pod in self.api.async_watch(
                    "pods", namespace=kr8s.ALL, field_selector=selector
                ):
                    self.on_event(kind, dict(pod.raw))
            except Exception as exc:
                log.warning("pod watch ended (%s); watching again", exc)
                await asyncio.sleep(1)

    def on_event(self, kind: str, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        uid = meta["uid"]
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if uid not in self.stopping:
                self.stopping.add(uid)
                self.background(self.stop_pod(pod, final_delete=kind != "DELETED"))
            return
        if uid in self.running or status.get("phase") in ("Succeeded", "Failed"):
            return
        if status.get("phase") == "Running":
            # started by an earlier agent process whose children we cannot follow
            self.background(self.fail(pod, "NodeAgentRestarted", "the node agent lost it"))
            return
        self.running[uid] = asyncio.create_task(self.run_pod(pod))

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, name = meta["uid"], f"{meta['namespace']}/{meta['name']}"
        try:
            procs = [await self.spawn(pod, c) for c in spec["containers"]]
        except Exception as exc:
            log.warning("pod %s cannot start: %s", name, exc)
            await self.fail(pod, "CreateContainerError", str(exc))
            return
        self.procs[uid] = procs
        self.record_pids()
        log.info("pod %s running as pids %s", name, [p.pid for p in procs])
        await self.patch_status(pod, "Running", [{"running": {"startedAt": _now()}}] * len(procs))
        returned = await asyncio.gather(*(p.wait() for p in procs))
        self.procs.pop(uid, None)  # their pids may be reused from now on
        self.record_pids()
        codes = [128 - c if c < 0 else c for c in returned]  # killed by signal N: 128+N
        log.info("pod %s exited %s", name, codes)
        if uid in self.stopping:
            return  # deleted; stop_pod finishes the job
        terminated = [
            {
                "terminated": {
                    "exitCode": c,
                    "reason": "Completed" if c == 0 else "Error",
                    "finishedAt": _now(),
                }
            }
            for c in codes
        ]
        phase = "Succeeded" if not any(codes) else "Failed"
        with contextlib.suppress(kr8s.ServerError):
            await self.patch_status(pod, phase, terminated)

    async def spawn(
        self, pod: dict[str, Any], container: dict[str, Any]
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
        for var in container.get("env", []):
            env[var["name"]] = _env_value(pod, container, var)
        log_path = self.log_dir / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"
        log_path.mkdir(parents=True, exist_ok=True)
        cwd = container.get("workingDir")
        if cwd:
            os.makedirs(cwd, exist_ok=True)
        with (log_path / f"{container['name']}.log").open("ab") as out:
            return await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    async def stop_pod(self, pod: dict[str, Any], final_delete: bool) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        procs = self.procs.pop(uid, [])
        self.record_pids()
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        if procs:
            waiting = asyncio.gather(*(p.wait() for p in procs))
            try:
                await asyncio.wait_for(waiting, timeout=grace)
            except TimeoutError:
                for proc in procs:
                    _signal_group(proc.pid, signal.SIGKILL)
                await asyncio.gather(*(p.wait() for p in procs))
        task = self.running.pop(uid, None)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if final_delete:
            # as a kubelet does once the containers are gone: remove the object for good
            with contextlib.suppress(kr8s.ServerError):
                await self.call(
                    "DELETE",
                    f"pods/{meta['name']}",
                    namespace=meta["namespace"],
                    body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                )
        log.info("pod %s/%s stopped", meta["namespace"], meta["name"])

    # ------------------------------------------------------------------ orphans

    def record_pids(self) -> None:
        """Write the pods' process groups, so a later agent can end them if this one dies."""
        if self.pids_file is None:
            return
        lines = [f"{p.pid} {_start_time(p.pid)}" for ps in self.procs.values() for p in ps]
        self.pids_file.write_text("".join(line + "\n" for line in lines))

    def kill_orphans(self) -> None:
        """SIGKILL the pods' processes an earlier agent left (their pods are marked Failed)."""
        if self.pids_file is None or not self.pids_file.exists():
            return
        for line in self.pids_file.read_text().split("\n"):
            pid, _, started = line.partition(" ")
            # the start time tells a left-over process from an unrelated one that got its pid
            if pid.isdigit() and started and _start_time(int(pid)) == started:
                log.info("killing process group %s left by an earlier node agent", pid)
                _signal_group(int(pid), signal.SIGKILL)
        self.pids_file.unlink()

    async def shutdown(self) -> None:
        """SIGTERM: end every pod's processes (grace 5 s); the pods are lost with the node."""
        procs = [p for ps in self.procs.values() for p in ps]
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 5)
        for proc in procs:
            _signal_group(proc.pid, signal.SIGKILL)
        self.procs.clear()
        self.record_pids()

    async def fail(self, pod: dict[str, Any], reason: str, message: str) -> None:
        states = [{"terminated": {"exitCode": 128, "reason": reason, "message": message}}]
        with contextlib.suppress(kr8s.ServerError):
            await self.patch_status(pod, "Failed", states * len(pod["spec"]["containers"]), message)

    async def patch_status(
        self, pod: dict[str, Any], phase: str, states: list[dict[str, Any]], message: str = ""
    ) -> None:
        now = _now()
        ready = "True" if phase == "Running" else "False"
        conditions = [
            ("PodScheduled", "True"),
            ("Initialized", "True"),
            ("ContainersReady", ready),
            ("Ready", ready),
        ]
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": HOST_IP,
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": pod.get("status", {}).get("startTime") or now,
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": now} for t, s in conditions
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": ready == "True",
                    "restartCount": 0,
                    "started": phase == "Running",
                    "state": state,
                }
                for c, state in zip(pod["spec"]["containers"], states, strict=True)
            ],
        }
        if message:
            status["message"] = message
        meta = pod["metadata"]
        await self.call(
            "PATCH",
            f"pods/{meta['name']}/status",
            namespace=meta["namespace"],
            body={"status": status},
            content_type="application/strategic-merge-patch+json",
        )


def _env_value(pod: dict[str, Any], container: dict[str, Any], var: dict[str, Any]) -> str:
    if "valueFrom" not in var:
        return str(var.get("value", ""))
    source = var["valueFrom"]
    if "fieldRef" in source:
        path: str = source["fieldRef"]["fieldPath"]
        meta, spec = pod["metadata"], pod["spec"]
        for prefix, table in (
            ("metadata.labels", "labels"),
            ("metadata.annotations", "annotations"),
        ):
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
            raise ValueError(f"env {var['name']}: unsupported fieldRef {path!r}")
        return str(fields[path])
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        kind, _, resource = ref["resource"].partition(".")
        return str(container.get("resources", {}).get(kind, {}).get(resource, "0"))
    raise ValueError(f"env {var['name']}: this node agent supports only fieldRef sources")


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    add("--node", default="farside-node")
    # a node of host processes: advertise room for many small pilot pods, not the host's size
    add("--cpu", default=str(max(8, os.cpu_count() or 1)))
    add("--memory", default="64Gi")
    add("--gpus", type=int, default=0)
    add("--gpu-resource", default="nvidia.com/gpu")
    add("--pods", type=int, default=110)
    add("--label", action="append", default=[], help="node label k=v (repeatable)")
    add("--log-dir", default="pods", help="where containers' output goes")
    add("--pids-file", help="where to keep the pods' process ids")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the rest
    with warnings.catch_warnings():
        # the test cluster is 1.20, older than kr8s supports; the calls we make are stable
        warnings.simplefilter("ignore", UserWarning)
        api = await kr8s.asyncio.api(kubeconfig=args.kubeconfig)
    agent = NodeAgent(api, args)
    agent.kill_orphans()
    await agent.register()
    log.info("node %s registered (process-based node agent, not a kubelet)", agent.node)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    work = asyncio.gather(agent.heartbeat_loop(), agent.watch())
    await stop.wait()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    await agent.shutdown()
    log.info("node agent stopped")


if __name__ == "__main__":
    asyncio.run(main())
