"""The node the agent serves, as the API sees it (``node_agent.py`` runs its pods).

It registers a Ready ``Node`` (capacity from the flags, labels from ``--label``, taints
from ``--taint``) and keeps its status fresh with a heartbeat, so the node controller never
evicts its pods; the status says where the API server asks for containers' output
(``kubelet_logs.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import kr8s
from pod_status import timestamp
from runtime import HOST_IP, Call, Runtime

log = logging.getLogger("node-agent")
HEARTBEAT = 10.0
MERGE = "application/merge-patch+json"


class NodeStatus:
    """The ``Node`` object: registered once, its status patched every ``HEARTBEAT`` s."""

    def __init__(self, call: Call, args: argparse.Namespace, runtime: Runtime) -> None:
        self.call = call
        self.node: str = args.node
        self.args = args
        self.runtime = runtime  # its kind and version are the node's

    async def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "farside.dev/node-agent": self.runtime.kind,
        }
        labels.update(dict(item.split("=", 1) for item in self.args.label))
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}}
        try:
            await self.call("POST", "nodes", body=node)
        except kr8s.ServerError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
        # labels may have changed since an earlier run; a merge patch keeps others
        patch: dict[str, Any] = {"metadata": {"labels": labels}}
        if self.args.taint:
            patch["spec"] = {"taints": [_taint(item) for item in self.args.taint]}
        await self.call("PATCH", f"nodes/{self.node}", body=patch, content_type=MERGE)
        await self.heartbeat()

    async def heartbeat(self) -> None:
        now = timestamp()
        capacity = {
            "cpu": str(self.args.cpu),
            "memory": str(self.args.memory),
            "pods": str(self.args.pods),
            "ephemeral-storage": "100Gi",
        }
        if self.args.gpus:
            capacity[self.args.gpu_resource] = str(self.args.gpus)
        images = self.runtime.kind != "process"
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
                    "message": f"farside {self.runtime.kind}-based node agent (not a kubelet)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            # where the API server asks for containers' output (kubelet_logs.py)
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.args.kubelet_port}},
            "nodeInfo": {
                **dict.fromkeys(("kernelVersion", "kubeProxyVersion", "machineID", "bootID"), ""),
                "kubeletVersion": "v1.20.2-farside-node-agent",
                "osImage": "local images, host network" if images else "host processes",
                "containerRuntimeVersion": self.runtime.version,
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


def _taint(item: str) -> dict[str, str]:
    """``key=value:Effect`` (or ``key:Effect``), as kubectl taint writes it."""
    spec, _, effect = item.rpartition(":")
    key, _, value = spec.partition("=")
    return (
        {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
    )
