"""Pilots that die or go silent, and a gateway killed mid-run: no job is lost."""

from __future__ import annotations

import os
import signal
import time

import pytest

import farside
from farside_protocol import JobState
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pilot_pid(client: farside.Gateway, job_id: int) -> int:
    job = wait_until(lambda: (j := client.job(job_id)).state == "running" and j)
    pilot = next(p for p in client.pilots() if p.id == job.pilot_id)
    assert pilot.batch_id is not None
    return int(pilot.batch_id)


def test_sigkilled_pilot_job_finishes_on_another(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.task(gateway=client)
    def slow_square(x: int) -> int:
        time.sleep(3)
        return x * x

    fut = slow_square.submit(7)
    os.kill(_pilot_pid(client, fut.job_id), signal.SIGKILL)
    assert fut.result(timeout=60) == 49
    detail = client.job(fut.job_id)
    assert detail.attempts == 2
    first, second = detail.attempt_list
    assert first.state == "failed"
    assert first.error_class == "system"
    assert "lost" in (first.error or "")
    assert second.state == "finished"
    assert second.pilot_id != first.pilot_id


def test_silent_pilot_loses_its_lease_to_the_reaper(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.task(gateway=client)
    def slow() -> str:
        time.sleep(2)
        return "done"

    fut = slow.submit()
    pid = _pilot_pid(client, fut.job_id)
    os.killpg(pid, signal.SIGSTOP)  # alive to the batch system, silent to the gateway
    try:
        assert fut.result(timeout=60) == "done"
    finally:
        os.killpg(pid, signal.SIGKILL)
    first = client.job(fut.job_id).attempt_list[0]
    assert first.error_class == "system"
    assert "no heartbeat" in (first.error or "")


def test_system_errors_do_not_use_up_user_attempts(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.task(gateway=client, max_attempts=1)
    def slow() -> str:
        time.sleep(3)
        return "survived"

    fut = slow.submit()
    os.kill(_pilot_pid(client, fut.job_id), signal.SIGKILL)
    wait_until(lambda: client.job(fut.job_id).attempts >= 2, timeout=30)
    os.kill(_pilot_pid(client, fut.job_id), signal.SIGKILL)
    assert fut.result(timeout=90) == "survived"
    assert client.job(fut.job_id).attempts == 3


def test_gateway_killed_and_restarted_loses_nothing(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.task(gateway=client)
    def nap(x: int) -> int:
        time.sleep(0.5)
        return x + 100

    futures = list(nap.map(range(12)).futures)
    wait_until(lambda: any(j.state == "running" for j in client.jobs()))
    gateway.kill()
    time.sleep(1.5)  # pilots and the client are cut off meanwhile
    gateway.start(port=gateway.port)
    assert [f.result(timeout=90) for f in futures] == [x + 100 for x in range(12)]
    states = {j.id: j.state for j in client.jobs(limit=100)}
    assert all(states[f.job_id] is JobState.FINISHED for f in futures)


def test_gateway_stop_stops_its_pilots(gateway: GatewayProcess, client: farside.Gateway) -> None:
    wait_until(lambda: len([p for p in client.pilots() if p.state == "running"]) == 2)
    pids = gateway.pilot_pids()
    assert len(pids) == 2
    client.close()
    assert gateway.stop() == 0

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"

    assert all(gone(pid) for pid in pids)
