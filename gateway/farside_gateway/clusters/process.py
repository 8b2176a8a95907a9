"""The gateway's handle on scheduler processes, and a few spares started ahead of need."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: longest a scheduler may take from its settings to listening
START_TIMEOUT = 60.0
_PROGRAM = [sys.executable, "-m", "farside_gateway.clusters.scheduler"]


class SchedulerStartError(RuntimeError):
    """A scheduler process did not come up; the message has its last output."""


@dataclass
class Ready:
    address: str
    dashboard_port: int | None


class SchedulerProcess:
    """One scheduler process: started (distributed imported) and, once given settings, a
    cluster's scheduler. Closing its stdin ends it (see ``clusters.scheduler``)."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: str) -> None:
        self.process = process
        self.log_path = log_path  # the manager renames it after the cluster it serves

    @classmethod
    async def spawn(cls, log_path: str) -> SchedulerProcess:
        # stderr goes to a file per scheduler: distributed logs there, and a pipe nobody
        # reads would fill up and stall the scheduler
        stderr = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                *_PROGRAM,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            os.close(stderr)
        return cls(process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def start(self, settings: dict[str, Any]) -> Ready:
        """Hand over the cluster's settings and wait until the scheduler listens."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(settings).encode() + b"\n")
        await self.process.stdin.drain()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await self.process.stdout.readline()
        except TimeoutError:
            await self.stop()
            raise SchedulerStartError(
                f"the scheduler did not start within {START_TIMEOUT:g}s; see {self.log_path}"
            ) from None
        if not line:
            await self.process.wait()
            raise SchedulerStartError(
                f"the scheduler process ended (status {self.process.returncode}) before it "
                f"listened: {self._tail()}"
            )
        data = json.loads(line)
        return Ready(data["address"], data.get("dashboard_port"))

    def _tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4000))
                text = f.read().decode(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return " | ".join(text.strip().splitlines()[-lines:])

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, grace: float = 5.0) -> None:
        """Close its stdin (it closes the scheduler and exits); kill it if it lingers."""
        if self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class Spares:
    """Keeps ``count`` scheduler processes started and waiting for settings."""

    def __init__(self, count: int, log_dir: str) -> None:
        self.count = count
        self.log_dir = log_dir
        self._ready: list[SchedulerProcess] = []
        self._serial = 0
        self._filling: asyncio.Task[None] | None = None

    async def _spawn(self) -> SchedulerProcess:
        self._serial += 1
        path = os.path.join(self.log_dir, f"scheduler-{os.getpid()}-{self._serial}.log")
        return await SchedulerProcess.spawn(path)

    def fill(self) -> None:
        """Start spares in the background up to ``count``."""
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        self._ready = [p for p in self._ready if p.alive]
        while len(self._ready) < self.count:
            self._ready.append(await self._spawn())

    async def take(self) -> SchedulerProcess:
        """A started process: a spare if one is alive (then another is started), else new."""
        while self._ready:
            proc = self._ready.pop(0)
            if proc.alive:
                self.fill()
                return proc
        proc = await self._spawn()
        self.fill()
        return proc

    @property
    def log_paths(self) -> list[str]:
        return [p.log_path for p in self._ready]

    async def close(self) -> None:
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        for proc in self._ready:
            await proc.stop(grace=2.0)
        self._ready.clear()


def prune_logs(log_dir: str, keep: Iterable[str], older_than: float, now: float) -> list[str]:
    """Delete the scheduler logs in ``log_dir`` last written more than ``older_than``
    seconds before ``now``, except those in ``keep`` (running schedulers, spares); returns
    what it deleted. A cluster's log outlives it so its owner can read why it ended."""
    kept = {os.path.abspath(k) for k in keep}
    deleted: list[str] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            path = os.path.abspath(entry.path)
            if not entry.name.endswith(".log") or path in kept or not entry.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):  # another replica pruned it
                if now - entry.stat().st_mtime > older_than:
                    os.unlink(path)
                    deleted.append(path)
    return deleted
