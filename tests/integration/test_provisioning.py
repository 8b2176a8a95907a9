"""The local site keeps pilots between its warm minimum and what demand needs."""

from __future__ import annotations

import threading
import time

import psutil
import pytest

import farside
from farside_protocol.models import PilotInfo
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pilots_follow_demand_within_bounds(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[
            {
                "name": "local",
                "min_warm": 1,
                "max_pilots": 3,
                "idle_timeout": 1,
                "cores": 1,
                "memory": "1 GiB",
            },
        ]
    )
    client = gw.client()

    def live() -> list[PilotInfo]:
        return [p for p in client.pilots() if p.state in ("submitted", "running")]

    # registered, not just submitted: a pilot still starting up is neither idle nor quiet
    wait_until(lambda: [p.state for p in live()] == ["running"], timeout=60)
    time.sleep(1.5)
    assert len(live()) == 1  # the warm minimum stays, even idle past its timeout
    # ... and waits on long-polls, not in a busy loop: an idle pilot and gateway sleep
    (warm,) = live()
    processes = [psutil.Process(int(warm.batch_id or 0)), psutil.Process(gw.proc.pid)]
    before = [sum(p.cpu_times()[:2]) for p in processes]
    time.sleep(3)
    spent = [sum(p.cpu_times()[:2]) - b for p, b in zip(processes, before, strict=True)]
    assert max(spent) < 0.3, f"idle pilot / gateway used {spent} CPU seconds in 3 s"

    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(client.pilots()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()

    @farside.task(gateway=client, memory="100 MB")
    def nap(x: int) -> int:
        time.sleep(1.0)
        return x

    try:
        assert list(nap.map(range(9))) == list(range(9))
    finally:
        stop.set()
        watcher.join()
    assert most == 3  # scaled up to demand, never beyond max_pilots
    jobs = client.jobs(limit=9)
    assert len({j.pilot_id for j in jobs}) >= 2
    # idle pilots above the warm minimum leave on their own
    wait_until(lambda: len(live()) == 1, timeout=30)
    client.close()


def test_offline_site_gets_no_pilots_and_no_work(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[{"name": "local", "status": "offline", "min_warm": 1, "max_pilots": 2}]
    )
    client = gw.client()

    @farside.task(gateway=client, memory="100 MB")
    def one() -> int:
        return 1

    fut = one.submit()
    time.sleep(2)
    assert client.pilots() == []
    assert client.job(fut.job_id).state == "queued"
    client.close()
