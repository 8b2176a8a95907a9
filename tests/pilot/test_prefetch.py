"""How much work a pilot takes: fetching ahead while jobs are short, not while they run
long, and giving back the jobs that wait too long for room (against the fake gateway)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import cloudpickle

from support.fake_gateway import FakeGateway

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def noop() -> None:
    return None


async def test_prefetch_asks_for_more_while_jobs_are_short(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    start(cores=1)
    first = fake_gateway.add_job(noop)
    await fake_gateway.wait_for(lambda: fake_gateway.done(first))
    ids = [fake_gateway.add_job(noop) for _ in range(300)]
    await fake_gateway.wait_for(lambda: fake_gateway.done(*ids), within=60)
    assert fake_gateway.acquires[0].max_jobs == 1  # nothing known about job lengths yet
    # a one-core pilot held many short jobs at once
    assert max(fake_gateway.held_after_acquire) > 20


async def test_long_jobs_are_not_hoarded(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    first = fake_gateway.add_job(sleep, 0.3)  # long enough to stop prefetching (LONG_JOB)
    start(cores=1)
    await fake_gateway.wait_for(lambda: fake_gateway.done(first))
    # these run far longer than the check below takes, even on loaded cores: were one to
    # end first, the pilot would rightly take the next and the count would be off by one
    ids = [fake_gateway.add_job(sleep, 2.0) for _ in range(3)]
    await fake_gateway.wait_for(
        lambda: (
            len(fake_gateway.queue) <= 2 and any(u.job_id == ids[0] for u in fake_gateway.updates)
        )
    )
    await asyncio.sleep(0.1)
    # one runs; the others stay at the gateway for another pilot
    assert len(fake_gateway.queue) == 2


async def test_jobs_that_wait_for_room_are_given_back(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    # a one-core pilot that fetched ahead while jobs were short
    start(cores=1, hold_limit=0.5)
    warm = [fake_gateway.add_job(noop) for _ in range(40)]
    await fake_gateway.wait_for(lambda: fake_gateway.done(*warm))
    # then the job in front runs long, and the jobs behind it cannot start
    long = fake_gateway.add_job(sleep, 30.0)
    behind = [fake_gateway.add_job(noop) for _ in range(3)]
    await fake_gateway.wait_for(lambda: any(u.job_id == long for u in fake_gateway.updates))
    await fake_gateway.wait_for(lambda: {job for job, _ in fake_gateway.released} >= set(behind))
    assert all("waited over 0.5 s for room" in reason for _, reason in fake_gateway.released)
    assert long not in {job for job, _ in fake_gateway.released}
    # given back, they stay in the pool: the pilot does not take them again while it is busy
    await asyncio.sleep(1.0)
    assert {a.job_id for a in fake_gateway.queue} == set(behind)
    assert not fake_gateway.done(*behind)


async def test_a_long_running_job_stops_prefetch_before_it_ends(
    fake_gateway: FakeGateway, start: Callable[..., asyncio.Task[int]]
) -> None:
    pilot_task = start(cores=1)
    warm = [fake_gateway.add_job(noop) for _ in range(40)]
    await fake_gateway.wait_for(lambda: fake_gateway.done(*warm))
    long = fake_gateway.add_job(sleep, 30.0)  # as a Dask worker lease: runs until let go
    await fake_gateway.wait_for(lambda: any(u.job_id == long for u in fake_gateway.updates))
    await asyncio.sleep(0.5)
    asked = len(fake_gateway.acquires)
    later = [fake_gateway.add_job(noop) for _ in range(3)]
    await asyncio.sleep(1.0)
    # the pilot asks for nothing while its one core is taken by a long job
    assert len(fake_gateway.acquires) == asked
    assert {a.job_id for a in fake_gateway.queue} == set(later)
    assert not pilot_task.done()
