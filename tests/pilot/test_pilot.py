"""The pilot's loops against a small fake gateway (httpx.MockTransport), with real workers."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import cloudpickle
import pytest

from farside_pilot.config import PilotConfig
from farside_pilot.pilot import Pilot

from .fake_gateway import FakeGateway

cloudpickle.register_pickle_by_value(sys.modules[__name__])

PilotFactory = Callable[..., Pilot]


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def start(
    gateway: FakeGateway, tmp_path: Path
) -> AsyncIterator[Callable[..., asyncio.Task[int]]]:
    tasks: list[asyncio.Task[int]] = []
    pilots: list[Pilot] = []

    def start(**overrides: object) -> asyncio.Task[int]:
        settings: dict[str, object] = {
            "gateway_url": "http://gateway.test",
            "token": "site-token",
            "cores": 2,
            "memory": 4 * 1024**3,
            "idle_timeout": 60.0,
            "workdir": str(tmp_path),
            "gateway_grace": 5.0,
            "shutdown_grace": 2.0,
        }
        settings.update(overrides)
        pilot = Pilot(PilotConfig(**settings), transport=gateway.transport())  # type: ignore[arg-type]
        pilots.append(pilot)
        task = asyncio.create_task(pilot.run())
        tasks.append(task)
        return task

    yield start
    for pilot, task in zip(pilots, tasks, strict=True):
        if not task.done():
            pilot.stop("test teardown")
        await asyncio.wait_for(task, 20)


def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


async def test_registers_runs_jobs_and_reports(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    ids = [gateway.add_job(square, i) for i in range(10)]
    start()
    await gateway.wait_for(lambda: gateway.done(*ids))
    assert gateway.registration is not None
    assert gateway.registration.cores == 2
    for i, job_id in enumerate(ids):
        assert gateway.outcome(job_id) == (True, i * i)
        states = [u.state for u in gateway.updates if u.job_id == job_id]
        assert states == ["running", "finished"]
        final = gateway.final(job_id)
        assert final is not None
        assert final.exit_code == 0
        assert final.max_rss is not None
        await gateway.wait_for(lambda j=job_id, i=i: gateway.lines(j) == [f"squaring {i}"])


def fail() -> None:
    raise KeyError("nope")


async def test_failed_job_is_a_user_error(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(fail)
    start()
    await gateway.wait_for(lambda: gateway.done(job))
    final = gateway.final(job)
    assert final is not None
    assert (final.state, final.exit_code, final.error_class) == ("failed", 1, "user")
    assert final.error == "KeyError: 'nope'"
    ok, info = gateway.outcome(job)
    assert not ok
    assert "KeyError" in info.traceback


def crash() -> None:
    os._exit(9)


async def test_crashed_worker_fails_the_job_and_is_replaced(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    bad = gateway.add_job(crash)
    start(cores=1)
    await gateway.wait_for(lambda: gateway.done(bad))
    good = gateway.add_job(square, 3)
    await gateway.wait_for(lambda: gateway.done(good))
    final = gateway.final(bad)
    assert final is not None
    assert final.error_class == "user"
    assert final.exit_code == 9
    assert final.error is not None
    assert "exited with status 9" in final.error
    assert gateway.outcome(good) == (True, 9)


def print_slowly(n: int) -> None:
    for i in range(n):
        print(f"tick {i}")
        time.sleep(0.3)


async def test_log_lines_arrive_while_the_job_runs(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(print_slowly, 3)
    start()
    await gateway.wait_for(lambda: gateway.lines(job) == ["tick 0"], within=60)
    entry = next(e for e in gateway.logs if e.job_id == job)
    # the gateway has the line well before the next one is printed
    assert time.time() - entry.time < 0.25
    assert not gateway.done(job)
    await gateway.wait_for(lambda: gateway.done(job))
    assert gateway.lines(job) == ["tick 0", "tick 1", "tick 2"]


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


async def test_dropped_running_job_is_killed_and_not_reported(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(sleep, 60)
    start(cores=1)
    await gateway.wait_for(lambda: any(u.state == "running" for u in gateway.updates))
    gateway.to_drop.add(job)
    gateway._poke()
    after = gateway.add_job(square, 5)
    # the slot is free again only because the sleeping job was killed (and its worker
    # replaced by a new process: slow on loaded cores, yet well before the 60 s sleep ends)
    await gateway.wait_for(lambda: gateway.done(after), within=30)
    assert gateway.final(job) is None
    assert job not in gateway.heartbeats[-1].held


async def test_reports_naming_lost_jobs_are_resent_without_them(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    lost = gateway.add_job(square, 1)
    kept = gateway.add_job(square, 2)
    gateway.gone.add(lost)
    start()
    await gateway.wait_for(lambda: gateway.done(kept))
    assert gateway.final(lost) is None
    assert all(e.job_id != lost for e in gateway.logs)


def big() -> bytes:
    return os.urandom(600 * 1024)


async def test_large_payload_and_result_travel_out_of_band(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(big, inline=False)
    start()
    await gateway.wait_for(lambda: gateway.done(job))
    final = gateway.final(job)
    assert final is not None
    assert final.result_uploaded
    assert final.result is None
    ok, value = gateway.outcome(job)
    assert ok
    assert len(value) == 600 * 1024


async def test_survives_a_gateway_outage(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(sleep, 0.3)
    start()
    await gateway.wait_for(lambda: any(u.state == "running" for u in gateway.updates))
    gateway.down = 6
    await gateway.wait_for(lambda: gateway.done(job))
    assert gateway.outcome(job) == (True, "woke")
    assert gateway.down == 0


async def test_refused_token_exits_with_an_error(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    gateway.refuse_registration = True
    assert await asyncio.wait_for(start(), 10) == 1


async def test_retires_when_idle_and_not_needed(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(square, 4)
    task = start(idle_timeout=0.2)
    await gateway.wait_for(lambda: gateway.done(job))
    await asyncio.sleep(0.3)
    assert not task.done()  # the gateway still wants it
    gateway.retire = True
    gateway._poke()
    assert await asyncio.wait_for(task, 10) == 0
    assert gateway.exit_reason == "idle and not needed by the site"


async def test_stop_lets_running_jobs_finish(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(sleep, 0.5)
    task = start()
    await gateway.wait_for(lambda: any(u.state == "running" for u in gateway.updates))
    os.kill(os.getpid(), 15)
    assert await asyncio.wait_for(task, 10) == 0
    assert gateway.outcome(job) == (True, "woke")
    assert gateway.exit_reason == "stopped by SIGTERM"


async def test_stop_kills_jobs_after_the_grace(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = gateway.add_job(sleep, 60)
    task = start(shutdown_grace=0.3)
    await gateway.wait_for(lambda: any(u.state == "running" for u in gateway.updates))
    os.kill(os.getpid(), 15)
    assert await asyncio.wait_for(task, 10) == 0
    final = gateway.final(job)
    assert final is not None
    assert (final.state, final.error_class) == ("failed", "system")


def noop() -> None:
    return None


async def test_prefetch_asks_for_more_while_jobs_are_short(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    start(cores=1)
    first = gateway.add_job(noop)
    await gateway.wait_for(lambda: gateway.done(first))
    ids = [gateway.add_job(noop) for _ in range(300)]
    await gateway.wait_for(lambda: gateway.done(*ids), within=60)
    assert gateway.acquires[0].max_jobs == 1  # nothing known about job lengths yet
    # a one-core pilot held many short jobs at once
    assert max(gateway.held_after_acquire) > 20


async def test_long_jobs_are_not_hoarded(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    first = gateway.add_job(sleep, 0.3)  # long enough to stop prefetching (LONG_JOB)
    start(cores=1)
    await gateway.wait_for(lambda: gateway.done(first))
    # these run far longer than the check below takes, even on loaded cores: were one to
    # end first, the pilot would rightly take the next and the count would be off by one
    ids = [gateway.add_job(sleep, 2.0) for _ in range(3)]
    await gateway.wait_for(
        lambda: len(gateway.queue) <= 2 and any(u.job_id == ids[0] for u in gateway.updates)
    )
    await asyncio.sleep(0.1)
    # one runs; the others stay at the gateway for another pilot
    assert len(gateway.queue) == 2


async def test_jobs_that_wait_for_room_are_given_back(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    # a one-core pilot that fetched ahead while jobs were short
    start(cores=1, hold_limit=0.5)
    warm = [gateway.add_job(noop) for _ in range(40)]
    await gateway.wait_for(lambda: gateway.done(*warm))
    # then the job in front runs long, and the jobs behind it cannot start
    long = gateway.add_job(sleep, 30.0)
    behind = [gateway.add_job(noop) for _ in range(3)]
    await gateway.wait_for(lambda: any(u.job_id == long for u in gateway.updates))
    await gateway.wait_for(lambda: {job for job, _ in gateway.released} >= set(behind))
    assert all("waited over 0.5 s for room" in reason for _, reason in gateway.released)
    assert long not in {job for job, _ in gateway.released}
    # given back, they stay in the pool: the pilot does not take them again while it is busy
    await asyncio.sleep(1.0)
    assert {a.job_id for a in gateway.queue} == set(behind)
    assert not gateway.done(*behind)


async def test_a_long_running_job_stops_prefetch_before_it_ends(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    pilot_task = start(cores=1)
    warm = [gateway.add_job(noop) for _ in range(40)]
    await gateway.wait_for(lambda: gateway.done(*warm))
    long = gateway.add_job(sleep, 30.0)  # as a Dask worker lease: runs until let go
    await gateway.wait_for(lambda: any(u.job_id == long for u in gateway.updates))
    await asyncio.sleep(0.5)
    asked = len(gateway.acquires)
    later = [gateway.add_job(noop) for _ in range(3)]
    await asyncio.sleep(1.0)
    # the pilot asks for nothing while its one core is taken by a long job
    assert len(gateway.acquires) == asked
    assert {a.job_id for a in gateway.queue} == set(later)
    assert not pilot_task.done()


def add_up(values: list[int], scale: int = 1) -> int:
    return sum(values) * scale


async def test_inputs_are_fetched_and_put_in_place_before_the_job_starts(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    from farside_protocol.payload import InputRef, encode_value

    plain = gateway.add_job(square, 3)
    with_inputs = gateway.add_job(
        add_up,
        [InputRef(101), 5, InputRef(102)],
        scale=InputRef(101),
        inline=False,
        inputs={101: encode_value(2), 102: encode_value(30)},
    )
    start()
    await gateway.wait_for(lambda: gateway.done(plain, with_inputs))
    assert gateway.outcome(with_inputs) == (True, (2 + 5 + 30) * 2)
    assert gateway.outcome(plain) == (True, 9)
    # only the job with inputs asked for them
    assert sorted(gateway.input_requests) == [(with_inputs, 101), (with_inputs, 102)]


async def test_an_input_the_gateway_does_not_have_fails_the_job(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    from farside_protocol.payload import InputRef

    job = gateway.add_job(add_up, [InputRef(9)], inputs={})
    gateway.queue[-1].inputs = [9]
    start()
    await gateway.wait_for(lambda: gateway.done(job))
    final = gateway.final(job)
    assert final is not None
    assert final.state == "failed"
    assert final.error_class == "system"
    assert "cannot fetch an input" in (final.error or "")


def visible_gpus(hold: float) -> str:
    time.sleep(hold)  # long enough for the two GPU jobs to overlap
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


async def test_each_gpu_job_sees_its_own_devices_and_cpu_jobs_none(
    gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    # the batch system gave the slot GPUs 3 and 5 (no GPU is needed to test who sees which)
    start(cores=3, gpus=2, gpu_ids=["3", "5"])
    first = gateway.add_job(visible_gpus, 1.5, gpus=1)
    second = gateway.add_job(visible_gpus, 1.5, gpus=1)
    cpu = gateway.add_job(visible_gpus, 0.0)
    await gateway.wait_for(lambda: gateway.done(first, second, cpu))
    seen = {gateway.outcome(first)[1], gateway.outcome(second)[1]}
    assert seen == {"3", "5"}
    assert gateway.outcome(cpu) == (True, "")
    # the devices come back with the jobs: the next GPU job gets one again
    again = gateway.add_job(visible_gpus, 0.0, gpus=2)
    await gateway.wait_for(lambda: gateway.done(again))
    assert sorted(gateway.outcome(again)[1].split(",")) == ["3", "5"]


FAKE_NVIDIA_SMI = """#!/bin/sh
# what nvidia-smi answers for the query the pilot makes, on a machine with GPUs 3 and 5
printf '3, GPU-aaaa, 1024, 40\\n5, GPU-bbbb, 2048, 90\\n'
"""


async def test_a_gpu_jobs_memory_and_utilisation_are_reported(
    gateway: FakeGateway,
    start: Callable[..., asyncio.Task[int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # nvidia-smi stands in for the GPU here; tests/gpu/run_on_device.sh reads a real one
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    start(cores=2, gpus=1, gpu_ids=["GPU-bbbb"])
    gpu = gateway.add_job(visible_gpus, 3.0, gpus=1)
    cpu = gateway.add_job(visible_gpus, 3.0)
    await gateway.wait_for(lambda: gateway.done(gpu, cpu))
    final = gateway.final(gpu)
    assert final is not None
    assert (final.gpu_memory, final.gpu_utilization) == (2048 * 1024**2, 90.0)
    other = gateway.final(cpu)
    assert other is not None
    assert (other.gpu_memory, other.gpu_utilization) == (None, None)
