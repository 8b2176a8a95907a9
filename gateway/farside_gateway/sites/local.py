"""The ``local`` site: pilots are subprocesses of the gateway's host.

The batch id is the pilot's process id. After a gateway restart the pilots it started
before are not its children any more; they are observed through ``kill(pid, 0)`` and keep
working, so nothing they hold is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from .base import BatchState, BatchStatus, PilotLaunch, Site, SubmitError


@dataclass
class LocalSite(Site):
    stop_grace: float = 15.0
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # pilots started by an earlier gateway process on this host, seen alive since
    _adopted: set[int] = field(default_factory=set)

    async def submit(self, launch: PilotLaunch) -> str:
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **launch.env}
        try:
            proc = await asyncio.to_thread(_spawn, launch, environment)
        except OSError as exc:
            raise SubmitError(f"cannot start {launch.command[0]}: {exc}") from exc
        self._children[str(proc.pid)] = proc
        return str(proc.pid)

    async def observe(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        states: dict[str, BatchStatus] = {}
        for batch_id in batch_ids:
            child = self._children.get(batch_id)
            if child is not None:
                alive = child.poll() is None
                if not alive:
                    del self._children[batch_id]
            else:
                alive = _pid_alive(int(batch_id))
                if alive:
                    self._adopted.add(int(batch_id))
                else:
                    self._adopted.discard(int(batch_id))
            states[batch_id] = BatchStatus(BatchState.RUNNING if alive else BatchState.GONE)
        return states

    async def cancel(self, batch_id: str) -> None:
        _signal_group(int(batch_id), signal.SIGTERM)

    async def stop(self) -> None:
        """Stop our pilots: SIGTERM (they finish reporting and say goodbye), then SIGKILL."""
        children = list(self._children.values())
        for pid in [p.pid for p in children] + list(self._adopted):
            _signal_group(pid, signal.SIGTERM)
        await asyncio.gather(
            *(asyncio.to_thread(self._reap, p) for p in children),
            *(asyncio.to_thread(self._reap_adopted, pid) for pid in self._adopted),
        )
        self._children.clear()
        self._adopted.clear()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def _reap_adopted(self, pid: int) -> None:
        deadline = time.monotonic() + self.stop_grace
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)


def _spawn(launch: PilotLaunch, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    with launch.log_path.open("ab") as log_file:
        # a session of its own: Ctrl-C in `farside up` reaches the gateway, which then
        # stops pilots in order instead of having them die mid-report
        return subprocess.Popen(
            launch.command,
            env=environment,
            cwd=launch.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive; /proc tells (Linux); elsewhere trust kill()
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
