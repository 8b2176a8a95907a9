"""The schedulers this gateway replica manages, and how each one ends.

Two kinds: those it started (a child :class:`SchedulerProcess`, watched until it exits) and
those it adopted from a replica that is gone (reached only over the scheduler's TLS comm;
see :mod:`.adoption`). The manager asks what should happen to a cluster; the keeper knows
how to stop, keep alive or hand over the scheduler behind it, and reports each end through
``mark_ended`` (the cluster's row and its worker leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .process import SchedulerProcess
from .scheduler_rpc import SchedulerRpc

log = logging.getLogger(__name__)

#: how long an adoption waits for the scheduler to answer (a gone one refuses at once)
PROBE_TIMEOUT = 5.0

MarkEnded = Callable[[str, str, str], Awaitable[None]]
ReadRow = Callable[[str], Awaitable[Any]]


class SchedulerKeeper:
    def __init__(self, rpc: SchedulerRpc, mark_ended: MarkEnded, read_row: ReadRow) -> None:
        self.rpc = rpc
        self.mark_ended = mark_ended
        self.read_row = read_row
        self.procs: dict[str, SchedulerProcess] = {}
        self.adopted: set[str] = set()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, str] = {}

    def manages(self, name: str) -> bool:
        return name in self.procs or name in self.adopted

    @property
    def log_paths(self) -> list[str]:
        return [p.log_path for p in self.procs.values()]

    # ------------------------------------------------------------ taking schedulers on

    def started(self, name: str, proc: SchedulerProcess) -> None:
        """A scheduler this replica started: watched until its process ends."""
        self.procs[name] = proc
        self._watchers[name] = asyncio.create_task(self._watch(name, proc), name=f"watch-{name}")

    async def adopt(self, row: Any, gone: str, state_if_ended: str = "failed") -> bool:
        """Take on the scheduler of cluster ``row`` whose manager is gone (``gone`` says
        how); True if it answers. One that does not is marked ``state_if_ended``."""
        try:
            await self.rpc.call(row, "farside_keepalive", PROBE_TIMEOUT)
        except Exception as exc:
            log.info("cluster %s: its scheduler does not answer (%r)", row.name, exc)
            await self.mark_ended(
                row.name,
                state_if_ended,
                f"{gone}, and its scheduler ended with it; start a new one",
            )
            return False
        self.adopted.add(row.name)
        log.info(
            "cluster %s: adopted its scheduler at %s (%s)", row.name, row.scheduler_address, gone
        )
        return True

    async def keep_alive(self, row: Any) -> bool:
        """Tell an adopted scheduler it is still managed; False (and the cluster marked
        failed) if it no longer answers."""
        try:
            await self.rpc.call(row, "farside_keepalive", PROBE_TIMEOUT)
        except Exception as exc:
            self.adopted.discard(row.name)
            await self.mark_ended(
                row.name,
                "failed",
                f"its scheduler stopped answering ({type(exc).__name__}): it ended, idle or "
                "failed; start a new one",
            )
            return False
        return True

    # ------------------------------------------------------------ ending

    async def stop(self, name: str, reason: str) -> None:
        """End the cluster's scheduler (or just its row, if no scheduler is held here)."""
        self._stop_reasons[name] = reason
        proc = self.procs.get(name)
        if proc is not None:
            await proc.stop()
        # get, not pop: the reconcile pass may be stopping the same cluster as the owner's
        # request; each must wait for the watcher to mark it, not just the first
        watcher = self._watchers.get(name)
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(watcher)
        if proc is not None:
            return  # the watcher marked it
        self._stop_reasons.pop(name, None)
        if name in self.adopted:
            self.adopted.discard(name)
            with contextlib.suppress(Exception):  # gone already is as good as stopped
                row = await self.read_row(name)
                await self.rpc.call(row, "terminate", PROBE_TIMEOUT)
        await self.mark_ended(name, "stopped", reason)

    async def stop_all(self, reason: str) -> None:
        for name in [*self.procs, *self.adopted]:
            await self.stop(name, reason)

    def hand_over(self) -> list[str]:
        """Leave every scheduler running for another replica to adopt; returns their
        clusters. The started ones see their stdin close when this process exits, which
        starts their orphan grace."""
        names = [*self.procs, *self.adopted]
        for watcher in self._watchers.values():
            watcher.cancel()
        self._watchers.clear()
        self.procs.clear()
        self.adopted.clear()
        return names

    async def _watch(self, name: str, proc: SchedulerProcess) -> None:
        code = await proc.wait()
        self.procs.pop(name, None)
        reason = self._stop_reasons.pop(name, None)
        state = "stopped"
        if reason is None and code == 0:
            row = await self.read_row(name)
            reason = f"idle for {row.idle_timeout:g}s: the scheduler stopped itself"
        elif reason is None:
            state = "failed"
            reason = f"the scheduler process ended with status {code}; see {proc.log_path}"
        await self.mark_ended(name, state, reason)
        # only now: stop() awaits this task through _watchers until the cluster is marked
        self._watchers.pop(name, None)
