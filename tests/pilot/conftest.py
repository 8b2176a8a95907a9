from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farside_pilot.config import PilotConfig
from farside_pilot.pilot import Pilot
from farside_pilot.worker import JobOutcome
from farside_pilot.workers import Message, WorkerProcess
from farside_protocol.payload import dump_function, encode_call
from support.fake_gateway import FakeGateway


class WorkerHarness:
    """A real worker process whose messages land in a queue."""

    def __init__(self, workdir: Path) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.workdir = workdir
        self.process = WorkerProcess(lambda _w, m: self.messages.put(m), cwd=str(workdir))
        assert self.next()[0] == "ready"
        self._job = 0

    def next(self, timeout: float = 60.0) -> Message:  # a worker's start can be slow
        return self.messages.get(timeout=timeout)

    def send(self, fn: Any, *args: Any, **kwargs: Any) -> int:
        self._job += 1
        payload = encode_call(dump_function(fn), args, kwargs)
        self.process.run(self._job, payload, str(self.workdir / "scratch"))
        return self._job

    def collect(self, job_id: int) -> tuple[list[Message], JobOutcome]:
        """Messages up to the job's result, and the result."""
        logs: list[Message] = []
        while True:
            message = self.next()
            if message[0] == "done":
                assert message[1] == job_id
                return logs, message[2]
            assert message[0] == "log", message
            assert message[1] == job_id
            logs.append(message)

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> tuple[list[Message], JobOutcome]:
        return self.collect(self.send(fn, *args, **kwargs))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerHarness]:
    harness = WorkerHarness(tmp_path)
    yield harness
    harness.process.kill()
    harness.process.join(10)


@pytest.fixture
async def start(
    fake_gateway: FakeGateway, tmp_path: Path
) -> AsyncIterator[Callable[..., asyncio.Task[int]]]:
    """Factory: ``start(**settings)`` runs a pilot of the fake gateway's; each is stopped,
    and awaited, after the test."""
    tasks: list[asyncio.Task[int]] = []
    pilots: list[Pilot] = []

    def start(**overrides: object) -> asyncio.Task[int]:
        settings: dict[str, object] = {
            "gateway_url": fake_gateway.url,
            "token": "site-token",
            "cores": 2,
            "memory": 4 * 1024**3,
            "idle_timeout": 60.0,
            "workdir": str(tmp_path),
            "gateway_grace": 5.0,
            "shutdown_grace": 2.0,
        }
        settings.update(overrides)
        pilot = Pilot(PilotConfig(**settings))  # type: ignore[arg-type]
        pilots.append(pilot)
        task = asyncio.create_task(pilot.run())
        tasks.append(task)
        return task

    yield start
    for pilot, task in zip(pilots, tasks, strict=True):
        if not task.done():
            pilot.stop("test teardown")
