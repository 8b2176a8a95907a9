"""farside's node agent for the test cluster. It is NOT a kubelet.

It serves one node through the API, as a kubelet would, and hands the containers to a
runtime (``--runtime``, see ``runtime.py``):

* ``process`` (the default): no container runtime. Images are ignored, and every
  container of a pod bound to this node runs as a plain process of this host (its
  ``command`` + ``args``, in its ``workingDir``, as the agent's user); no volumes, no
  probes.
* ``buildah``: each container runs its image (local images only, never pulled) through
  ``buildah run``, with volumes, Services' variables and host names, and readiness
  probes; see ``image_runtime.py`` and ``volumes.py``. It needs root and buildah.

What the agent does for either:

* registers a Ready ``Node`` (capacity from the flags, labels from ``--label``, taints
  from ``--taint``) and keeps its status fresh, so the node controller never evicts
  (``node_status.py``);
* watches pods whose ``spec.nodeName`` is this node and starts their containers with the
  pod's environment: literal ``value``\\ s, downward-API ``fieldRef``\\ s
  (``metadata.name``, ``metadata.namespace``, ``metadata.uid``, ``spec.nodeName``,
  ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``, labels and
  annotations), ``resourceFieldRef``\\ s, ``secretKeyRef``\\ s, ``configMapKeyRef``\\ s and
  ``envFrom``; a pod whose secret or config map does not exist yet stays ``Pending``;
* reports the pod's phase: ``Running`` (``Ready`` once its readiness probes pass, where
  the runtime runs them), then ``Succeeded`` (every container exited 0) or ``Failed``,
  with each container's exit code (128+N for signal N) and reason (``pod_status.py``);
* on deletion sends SIGTERM to each container, SIGKILL after the grace period, then
  removes the pod object, as a kubelet does.

Each container's stdout and stderr go to ``<log-dir>/<namespace>_<pod>/<container>.log``,
which the agent serves to the API server as a kubelet's ``containerLogs`` (``kubectl
logs``; ``kubelet_logs.py``, on ``--kubelet-port``). It does not enforce resource limits,
pull images, restart containers or serve ``exec``.
scripts/kubernetes.sh starts it: ``python scripts/k8s/node_agent.py --kubeconfig K ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import kubelet_logs
from kr8s._api import Api
from node_status import NodeStatus
from pod_status import PodStatus, timestamp
from runtime import (
    HOST_IP,
    PodError,
    PodWaiting,
    ProcessRuntime,
    Runtime,
    Started,
    log_path,
    signal_group,
    start_time,
)

log = logging.getLogger("node-agent")
RETRY = 3.0  # seconds between attempts to start a pod that waits for a secret or a claim


class NodeAgent:
    def __init__(self, api: Api, args: argparse.Namespace) -> None:
        self.api = api
        self.node: str = args.node
        self.args = args
        self.log_dir = Path(args.log_dir)
        self.running: dict[str, asyncio.Task[None]] = {}  # pod uid -> its supervisor
        self.procs: dict[str, list[Started]] = {}
        self.stopping: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # held, or the loop may drop them
        self.pids_file = Path(args.pids_file) if args.pids_file else None
        self.runtime: Runtime = ProcessRuntime(self.call)
        if args.runtime == "buildah":
            from image_runtime import BuildahRuntime  # only this runtime needs buildah

            state_dir = Path(args.state_dir) if args.state_dir else self.log_dir.parent
            self.runtime = BuildahRuntime(self.call, self.node, state_dir, api.auth.server)
        self.pod_status = PodStatus(self.call, self.runtime)

    async def call(self, method: str, url: str, namespace: str | None = None, **kw: Any) -> Any:
        body = kw.pop("body", None)
        if body is not None:
            kw["content"] = json.dumps(body)
            kw["headers"] = {"Content-Type": kw.pop("content_type", "application/json")}
        async with self.api.call_api(method, url=url, namespace=namespace, **kw) as response:
            return response.json()

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
            self.background(
                self.pod_status.fail(pod, "NodeAgentRestarted", "the node agent lost it")
            )
            return
        self.running[uid] = asyncio.create_task(self.run_pod(pod))

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, name = meta["uid"], f"{meta['namespace']}/{meta['name']}"
        started = await self.start(pod)
        if started is None:
            return
        self.procs[uid] = started
        self.record_pids()
        log.info("pod %s running as pids %s", name, [s.proc.pid for s in started])
        containers = spec["containers"]
        probes = [c.get("readinessProbe") if self.runtime.probes else None for c in containers]
        running = [{"running": {"startedAt": timestamp()}}] * len(started)
        ready = [probe is None for probe in probes]
        readiness = None
        if uid in self.stopping:  # deleted while starting: stop_pod found nothing to stop
            await self.end(started, _grace(pod))
        else:
            with contextlib.suppress(kr8s.ServerError):  # gone: its deletion event follows
                await self.pod_status.patch(pod, "Running", running, ready=ready)
            if not all(ready):
                readiness = asyncio.create_task(
                    self.pod_status.readiness(pod, started, probes, running)
                )
        returned = await asyncio.gather(*(s.proc.wait() for s in started))
        if readiness is not None:
            readiness.cancel()
            await asyncio.gather(readiness, return_exceptions=True)
        self.procs.pop(uid, None)  # their pids may be reused from now on
        self.record_pids()
        await self.runtime.ended(started)
        codes = [128 - c if c < 0 else c for c in returned]  # killed by signal N: 128+N
        log.info("pod %s exited %s", name, codes)
        if uid in self.stopping:
            return  # deleted; stop_pod finishes the job
        terminated = [
            {
                "terminated": {
                    "exitCode": c,
                    "reason": "Completed" if c == 0 else "Error",
                    "finishedAt": timestamp(),
                }
            }
            for c in codes
        ]
        phase = "Succeeded" if not any(codes) else "Failed"
        with contextlib.suppress(kr8s.ServerError):
            await self.pod_status.patch(pod, phase, terminated)

    async def start(self, pod: dict[str, Any]) -> list[Started] | None:
        """The pod's started containers, or None if it failed or went away first."""
        meta = pod["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        reported = ""
        while meta["uid"] not in self.stopping:
            try:
                return await self.runtime.start(pod, self.log_dir)
            except PodWaiting as exc:
                if exc.message != reported:  # once per reason, not every retry
                    log.info("pod %s waits: %s", name, exc.message)
                    reported = exc.message
                    waiting = {"waiting": {"reason": exc.reason, "message": exc.message}}
                    with contextlib.suppress(kr8s.ServerError):
                        n = len(pod["spec"]["containers"])
                        await self.pod_status.patch(pod, "Pending", [waiting] * n, exc.message)
                await asyncio.sleep(RETRY)
            except PodError as exc:
                log.warning("pod %s cannot start: %s", name, exc.message)
                await self.pod_status.fail(pod, exc.reason, exc.message)
                return None
            except Exception as exc:
                log.warning("pod %s cannot start: %s", name, exc)
                await self.pod_status.fail(pod, "CreateContainerError", str(exc))
                return None
        return None

    async def stop_pod(self, pod: dict[str, Any], final_delete: bool) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        started = self.procs.pop(uid, [])
        self.record_pids()
        await self.end(started, _grace(pod))
        task = self.running.pop(uid, None)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await self.runtime.forget(pod)
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

    async def end(self, started: list[Started], grace: float) -> None:
        """SIGTERM, then SIGKILL whatever still runs after ``grace`` seconds."""
        for one in started:
            self.runtime.signal(one, signal.SIGTERM)
        if not started:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*(s.proc.wait() for s in started)), grace)
        except TimeoutError:
            for one in started:
                self.runtime.signal(one, signal.SIGKILL)
            await asyncio.gather(*(s.proc.wait() for s in started))

    # ------------------------------------------------------------------ orphans

    def record_pids(self) -> None:
        """Write the pods' process groups, so a later agent can end them if this one dies."""
        if self.pids_file is None:
            return
        pids = [s.proc.pid for ss in self.procs.values() for s in ss]
        self.pids_file.write_text("".join(f"{pid} {start_time(pid)}\n" for pid in pids))

    async def kill_orphans(self) -> None:
        """SIGKILL the pods' processes an earlier agent left (their pods are marked Failed)."""
        if self.pids_file is not None and self.pids_file.exists():
            for line in self.pids_file.read_text().split("\n"):
                pid, _, started = line.partition(" ")
                # the start time tells a left-over process from one that got its pid since
                if pid.isdigit() and started and start_time(int(pid)) == started:
                    log.info("killing process group %s left by an earlier node agent", pid)
                    signal_group(int(pid), signal.SIGKILL)
            self.pids_file.unlink()
        await self.runtime.cleanup()

    async def shutdown(self) -> None:
        """SIGTERM: end every pod's processes (grace 5 s); the pods are lost with the node."""
        started = [s for ss in self.procs.values() for s in ss]
        await self.end(started, 5)
        self.procs.clear()
        self.record_pids()
        await self.runtime.cleanup()


def _grace(pod: dict[str, Any]) -> float:
    grace = pod["metadata"].get("deletionGracePeriodSeconds")
    if grace is None:
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    return float(grace)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    add("--node", default="farside-node")
    add("--runtime", choices=("process", "buildah"), default="process")
    # a node of host processes: advertise room for many small pilot pods, not the host's size
    add("--cpu", default=str(max(8, os.cpu_count() or 1)))
    add("--memory", default="64Gi")
    add("--gpus", type=int, default=0)
    add("--gpu-resource", default="nvidia.com/gpu")
    add("--pods", type=int, default=110)
    add("--label", action="append", default=[], help="node label k=v (repeatable)")
    add("--taint", action="append", default=[], help="node taint k=v:Effect (repeatable)")
    add("--log-dir", default="pods", help="where containers' output goes")
    add("--state-dir", help="buildah: where volumes are kept (default: the log dir's parent)")
    add("--pids-file", help="where to keep the pods' process ids")
    add("--kubelet-port", type=int, default=10250, help="where pods' logs are served")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the rest
    with warnings.catch_warnings():
        # the test cluster is 1.20, older than kr8s supports; the calls we make are stable
        warnings.simplefilter("ignore", UserWarning)
        api = await kr8s.asyncio.api(kubeconfig=args.kubeconfig)
    agent = NodeAgent(api, args)
    await agent.kill_orphans()

    def output(namespace: str, pod: str, container: str) -> Path:
        return log_path(agent.log_dir, namespace, pod, container)

    logs = await kubelet_logs.serve(output, HOST_IP, args.kubelet_port)
    node = NodeStatus(agent.call, args, agent.runtime)
    await node.register()
    log.info("node %s registered (%s node agent, not a kubelet)", agent.node, args.runtime)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    work = asyncio.gather(node.heartbeat_loop(), agent.watch(), agent.runtime.duties())
    await stop.wait()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    await agent.shutdown()
    await logs.cleanup()
    log.info("node agent stopped")


if __name__ == "__main__":
    asyncio.run(main())
