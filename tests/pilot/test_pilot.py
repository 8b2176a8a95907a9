"""The pilot's loops against the fake gateway, with real workers: running and reporting
jobs, their logs, faults of the jobs and of the gateway, stopping, inputs and GPUs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest

from support.fake_gateway import FakeGateway

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


async def test_registers_runs_jobs_and_reports(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    ids = [fake_gateway.add_job(square, i) for i in range(10)]
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(*ids))
    assert fake_gateway.registration is not None
    assert fake_gateway.registration.cores == 2
    for i, job_id in enumerate(ids):
        assert fake_gateway.outcome(job_id) == (True, i * i)
        states = [u.state for u in fake_gateway.updates if u.job_id == job_id]
        assert states == ["running", "finished"]
        final = fake_gateway.final(job_id)
        assert final is not None
        assert final.exit_code == 0
        assert final.max_rss is not None
        await fake_gateway.wait_for(
            lambda j=job_id, i=i: fake_gateway.lines(j) == [f"squaring {i}"]
        )


def fail() -> None:
    raise KeyError("nope")


async def test_failed_job_is_a_user_error(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(fail)
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    final = fake_gateway.final(job)
    assert final is not None
    assert (final.state, final.exit_code, final.error_class) == ("failed", 1, "user")
    assert final.error == "KeyError: 'nope'"
    ok, info = fake_gateway.outcome(job)
    assert not ok
    assert "KeyError" in info.traceback


def crash() -> None:
    os._exit(9)


async def test_crashed_worker_fails_the_job_and_is_replaced(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    bad = fake_gateway.add_job(crash)
    start(cores=1)
    await fake_gateway.wait_for(lambda: fake_gateway.done(bad))
    good = fake_gateway.add_job(square, 3)
    await fake_gateway.wait_for(lambda: fake_gateway.done(good))
    final = fake_gateway.final(bad)
    assert final is not None
    assert final.error_class == "user"
    assert final.exit_code == 9
    assert final.error is not None
    assert "exited with status 9" in final.error
    assert fake_gateway.outcome(good) == (True, 9)


def print_slowly(n: int) -> None:
    for i in range(n):
        print(f"tick {i}")
        time.sleep(0.3)


async def test_log_lines_arrive_while_the_job_runs(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(print_slowly, 3)
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.lines(job) == ["tick 0"], within=60)
    entry = fake_gateway.logs[job][0]
    # the gateway has the line well before the next one is printed
    assert time.time() - entry.time < 0.25
    assert not fake_gateway.done(job)
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    assert fake_gateway.lines(job) == ["tick 0", "tick 1", "tick 2"]


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


async def test_dropped_running_job_is_killed_and_not_reported(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(sleep, 60)
    start(cores=1)
    await fake_gateway.wait_for(lambda: any(u.state == "running" for u in fake_gateway.updates))
    fake_gateway.drop(job)
    after = fake_gateway.add_job(square, 5)
    # the slot is free again only because the sleeping job was killed (and its worker
    # replaced by a new process: slow on loaded cores, yet well before the 60 s sleep ends)
    await fake_gateway.wait_for(lambda: fake_gateway.done(after), within=30)
    assert fake_gateway.final(job) is None
    assert job not in fake_gateway.heartbeats[-1].held


async def test_reports_naming_lost_jobs_are_resent_without_them(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    lost = fake_gateway.add_job(square, 1)
    kept = fake_gateway.add_job(square, 2)
    fake_gateway.gone.add(lost)
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(kept))
    assert fake_gateway.final(lost) is None
    assert fake_gateway.logs[lost] == []


def big() -> bytes:
    return os.urandom(600 * 1024)


async def test_large_payload_and_result_travel_out_of_band(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(big, inline=False)
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    final = fake_gateway.final(job)
    assert final is not None
    assert final.result_uploaded
    assert final.result is None
    ok, value = fake_gateway.outcome(job)
    assert ok
    assert len(value) == 600 * 1024


async def test_survives_a_gateway_outage(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(sleep, 0.3)
    start()
    await fake_gateway.wait_for(lambda: any(u.state == "running" for u in fake_gateway.updates))
    fake_gateway.down = 6
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    assert fake_gateway.outcome(job) == (True, "woke")
    assert fake_gateway.down == 0


async def test_refused_token_exits_with_an_error(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    fake_gateway.refuse_registration = True
    assert await asyncio.wait_for(start(), 10) == 1


async def test_retires_when_idle_and_not_needed(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(square, 4)
    task = start(idle_timeout=0.2)
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    await asyncio.sleep(0.3)
    assert not task.done()  # the gateway still wants it
    fake_gateway.retire_pilots()
    assert await asyncio.wait_for(task, 10) == 0
    assert fake_gateway.exit_reason == "idle and not needed by the site"


async def test_stop_lets_running_jobs_finish(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(sleep, 0.5)
    task = start()
    await fake_gateway.wait_for(lambda: any(u.state == "running" for u in fake_gateway.updates))
    os.kill(os.getpid(), 15)
    assert await asyncio.wait_for(task, 10) == 0
    assert fake_gateway.outcome(job) == (True, "woke")
    assert fake_gateway.exit_reason == "stopped by SIGTERM"


async def test_stop_kills_jobs_after_the_grace(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    job = fake_gateway.add_job(sleep, 60)
    task = start(shutdown_grace=0.3)
    await fake_gateway.wait_for(lambda: any(u.state == "running" for u in fake_gateway.updates))
    os.kill(os.getpid(), 15)
    assert await asyncio.wait_for(task, 10) == 0
    final = fake_gateway.final(job)
    assert final is not None
    assert (final.state, final.error_class) == ("failed", "system")


def add_up(values: list[int], scale: int = 1) -> int:
    return sum(values) * scale


async def test_inputs_are_fetched_and_put_in_place_before_the_job_starts(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    from farside_protocol.payload import InputRef, encode_value

    plain = fake_gateway.add_job(square, 3)
    with_inputs = fake_gateway.add_job(
        add_up,
        [InputRef(101), 5, InputRef(102)],
        scale=InputRef(101),
        inline=False,
        inputs={101: encode_value(2), 102: encode_value(30)},
    )
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(plain, with_inputs))
    assert fake_gateway.outcome(with_inputs) == (True, (2 + 5 + 30) * 2)
    assert fake_gateway.outcome(plain) == (True, 9)
    # only the job with inputs asked for them
    assert sorted(fake_gateway.input_requests) == [(with_inputs, 101), (with_inputs, 102)]


async def test_an_input_the_gateway_does_not_have_fails_the_job(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    from farside_protocol.payload import InputRef

    job = fake_gateway.add_job(add_up, [InputRef(9)], inputs={})
    fake_gateway.queue[-1].inputs = [9]
    start()
    await fake_gateway.wait_for(lambda: fake_gateway.done(job))
    final = fake_gateway.final(job)
    assert final is not None
    assert final.state == "failed"
    assert final.error_class == "system"
    assert "cannot fetch an input" in (final.error or "")


def visible_gpus(hold: float) -> str:
    time.sleep(hold)  # long enough for the two GPU jobs to overlap
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


async def test_each_gpu_job_sees_its_own_devices_and_cpu_jobs_none(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    # the batch system gave the slot GPUs 3 and 5 (no GPU is needed to test who sees which)
    start(cores=3, gpus=2, gpu_ids=["3", "5"])
    first = fake_gateway.add_job(visible_gpus, 1.5, gpus=1)
    second = fake_gateway.add_job(visible_gpus, 1.5, gpus=1)
    cpu = fake_gateway.add_job(visible_gpus, 0.0)
    await fake_gateway.wait_for(lambda: fake_gateway.done(first, second, cpu))
    seen = {fake_gateway.outcome(first)[1], fake_gateway.outcome(second)[1]}
    assert seen == {"3", "5"}
    assert fake_gateway.outcome(cpu) == (True, "")
    # the devices come back with the jobs: the next GPU job gets one again
    again = fake_gateway.add_job(visible_gpus, 0.0, gpus=2)
    await fake_gateway.wait_for(lambda: fake_gateway.done(again))
    assert sorted(fake_gateway.outcome(again)[1].split(",")) == ["3", "5"]


FAKE_NVIDIA_SMI = """#!/bin/sh
# what nvidia-smi answers for the query the pilot makes, on a machine with GPUs 3 and 5
printf '3, GPU-aaaa, 1024, 40\\n5, GPU-bbbb, 2048, 90\\n'
"""


async def test_a_gpu_jobs_memory_and_utilisation_are_reported(
    fake_gateway: FakeGateway,
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
    gpu = fake_gateway.add_job(visible_gpus, 3.0, gpus=1)
    cpu = fake_gateway.add_job(visible_gpus, 3.0)
    await fake_gateway.wait_for(lambda: fake_gateway.done(gpu, cpu))
    final = fake_gateway.final(gpu)
    assert final is not None
    assert (final.gpu_memory, final.gpu_utilization) == (2048 * 1024**2, 90.0)
    other = fake_gateway.final(cpu)
    assert other is not None
    assert (other.gpu_memory, other.gpu_utilization) == (None, None)
