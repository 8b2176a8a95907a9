"""What the node agent reports of a pod (``node_agent.py`` runs it): its status, with the
phase, the conditions and each container's state, and its readiness, from the runtime's
readiness probes run at their periods and thresholds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import kr8s
from runtime import HOST_IP, Call, Runtime, Started

log = logging.getLogger("node-agent")


def timestamp() -> str:
    """Now, as the API's times are written."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodStatus:
    """Patches pods' status through the API, for the runtime that runs them."""

    def __init__(self, call: Call, runtime: Runtime) -> None:
        self.call = call
        self.runtime = runtime

    async def patch(
        self,
        pod: dict[str, Any],
        phase: str,
        states: list[dict[str, Any]],
        message: str = "",
        ready: list[bool] | None = None,
    ) -> None:
        now = timestamp()
        running = phase == "Running"
        flags = [running and r for r in (ready or [running] * len(states))]
        all_ready = "True" if running and all(flags) else "False"
        conditions = [
            ("PodScheduled", "True"),
            ("Initialized", "True"),
            ("ContainersReady", all_ready),
            ("Ready", all_ready),
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
                    "ready": flag,
                    "restartCount": 0,
                    "started": running,
                    "state": state,
                }
                for c, state, flag in zip(pod["spec"]["containers"], states, flags, strict=True)
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

    async def fail(self, pod: dict[str, Any], reason: str, message: str) -> None:
        states = [{"terminated": {"exitCode": 128, "reason": reason, "message": message}}]
        with contextlib.suppress(kr8s.ServerError):
            await self.patch(pod, "Failed", states * len(pod["spec"]["containers"]), message)

    async def readiness(
        self,
        pod: dict[str, Any],
        started: list[Started],
        probes: list[dict[str, Any] | None],
        running: list[dict[str, Any]],
    ) -> None:
        """Run the readiness probes at their periods; report each change of readiness."""
        loop = asyncio.get_running_loop()
        ready = [probe is None for probe in probes]
        streak = [0] * len(probes)  # consecutive results: > 0 successes, < 0 failures
        due = [loop.time() + float((p or {}).get("initialDelaySeconds", 0)) for p in probes]
        while True:
            now = loop.time()
            turn = [i for i, p in enumerate(probes) if p is not None and due[i] <= now]
            results = await asyncio.gather(
                *(self.runtime.probe(pod, started[i], probes[i] or {}) for i in turn)
            )
            before = list(ready)
            for i, ok in zip(turn, results, strict=True):
                probe = probes[i] or {}
                streak[i] = max(streak[i], 0) + 1 if ok else min(streak[i], 0) - 1
                if streak[i] >= int(probe.get("successThreshold", 1)):
                    ready[i] = True
                elif -streak[i] >= int(probe.get("failureThreshold", 3)):
                    ready[i] = False
                due[i] = now + float(probe.get("periodSeconds", 10))
            if ready != before:
                log.info("pod %s/%s ready: %s", *_names(pod), ready)
                with contextlib.suppress(kr8s.ServerError):
                    await self.patch(pod, "Running", running, ready=ready)
            pending = [due[i] for i, p in enumerate(probes) if p is not None]
            await asyncio.sleep(max(0.0, min(pending) - loop.time()))


def _names(pod: dict[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]
