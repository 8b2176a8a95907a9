"""The htcondor site against a real HTCondor pool (``scripts/htcondor.sh``).

Run with ``pytest -m htcondor`` as root; the session starts the pool if it is not up.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import farside
from farside_protocol.models import PilotInfo
from support.harness import GatewayProcess, wait_until
from support.htcondor import CondorGateways, condor, condor_gateways, site_jobs, start_pool

pytestmark = [pytest.mark.htcondor, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="session")
def condor_bin() -> Path:
    return start_pool()


@pytest.fixture
def condor_gw(condor_bin: Path) -> Iterator[CondorGateways]:
    with condor_gateways(condor_bin) as made:
        yield made


def _live(client: farside.Gateway) -> list[PilotInfo]:
    return [p for p in client.pilots() if p.state in ("submitted", "running")]


def _pilot_records(gw: GatewayProcess) -> dict[int, tuple[str, str | None, str | None]]:
    """Every pilot the gateway made, ended ones too: id -> (state, batch id, reason)."""
    with sqlite3.connect(gw.state_dir / "farside.db") as db:
        rows = db.execute("select id, state, batch_id, reason from pilots").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def test_map_runs_on_condor_pilots_with_condor_batch_ids(condor_gw: CondorGateways) -> None:
    site = condor_gw.site(max_pilots=4, idle_timeout=30)
    gw = condor_gw.start(sites=[site])
    client = gw.client()
    seen: dict[str, int] = {}  # ClusterId.ProcId -> FarsidePilot, as condor_q showed them
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for batch_id, ad in site_jobs(condor_gw.bin_dir, site["name"]).items():
                if ad["JobStatus"] == 2:
                    seen[batch_id] = ad["FarsidePilot"]
            stop.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    @farside.task(gateway=client, memory="100 MB")
    def square(x: int) -> int:
        time.sleep(0.5)
        return x * x

    try:
        futures = list(square.map(range(20)).futures)
        assert [f.result(timeout=90) for f in futures] == [x * x for x in range(20)]
    finally:
        stop.set()
        watcher.join()
    pilots = {p.id: p for p in client.pilots()}
    assert seen, "no pilot job was ever running in condor_q"
    # every pilot's batch id is the ClusterId.ProcId of the condor job that carries its id
    for batch_id, pilot_id in seen.items():
        assert pilots[pilot_id].batch_id == batch_id
    jobs = client.jobs(limit=20)
    assert {j.state for j in jobs} == {"finished"}
    for job in jobs:
        (attempt,) = client.job(job.id).attempt_list
        assert attempt.site == site["name"]
        assert attempt.batch_id == pilots[attempt.pilot_id or 0].batch_id
        assert attempt.batch_id in seen
    client.close()


def test_condor_rm_of_a_busy_pilot_is_a_system_retry(condor_gw: CondorGateways) -> None:
    site = condor_gw.site(min_warm=1, max_pilots=2, idle_timeout=30)
    gw = condor_gw.start(sites=[site])
    client = gw.client()
    marker = condor_gw.shared_dir("marks") / "first-attempt"

    @farside.task(gateway=client, memory="100 MB", max_attempts=1)
    def stubborn(path: str) -> str:
        if not os.path.exists(path):
            open(path, "w").close()
            time.sleep(600)  # the first attempt only ends when its pilot is removed
        return "done"

    fut = stubborn.submit(str(marker))
    job = wait_until(lambda: (j := client.job(fut.job_id)).state == "running" and j, timeout=90)
    pilot = next(p for p in client.pilots() if p.id == job.pilot_id)
    assert pilot.batch_id in site_jobs(condor_gw.bin_dir, site["name"])
    condor(condor_gw.bin_dir, "condor_rm", str(pilot.batch_id))

    assert fut.result(timeout=120) == "done"
    detail = client.job(fut.job_id)
    first, second = detail.attempt_list
    assert (first.state, first.error_class) == ("failed", "system")
    assert first.batch_id == pilot.batch_id
    # SIGTERM came first: the pilot stopped the job itself and reported it
    assert "pilot was stopped" in (first.error or "")
    assert second.state == "finished"
    assert second.batch_id not in (None, pilot.batch_id)
    # the removed job reaches condor_history once the schedd has cleaned it up, which need
    # not be before its job was retried elsewhere
    removed = wait_until(
        lambda: site_jobs(condor_gw.bin_dir, site["name"], "condor_history").get(
            str(pilot.batch_id)
        ),
        timeout=60,
        interval=0.5,
    )
    assert "condor_rm" in removed.get("RemoveReason", "")
    client.close()


def test_idle_pilots_leave_the_queue(condor_gw: CondorGateways) -> None:
    site = condor_gw.site(max_pilots=2, idle_timeout=2)
    gw = condor_gw.start(sites=[site])
    client = gw.client()

    @farside.task(gateway=client, memory="100 MB")
    def one(x: int) -> int:
        return x

    assert [f.result(timeout=90) for f in one.map(range(3)).futures] == [0, 1, 2]
    assert site_jobs(condor_gw.bin_dir, site["name"])  # pilots wait in the queue, idle
    wait_until(lambda: not site_jobs(condor_gw.bin_dir, site["name"]), timeout=90)
    wait_until(lambda: not _live(client), timeout=30)
    records = _pilot_records(gw)
    assert {state for state, _, _ in records.values()} == {"exited"}
    ended = site_jobs(condor_gw.bin_dir, site["name"], "condor_history")
    assert {batch_id for _, batch_id, _ in records.values()} == set(ended)
    # they left by themselves: completed with exit code 0, none removed
    assert {(ad["JobStatus"], ad.get("ExitCode")) for ad in ended.values()} == {(4, 0)}
    client.close()


def test_held_pilot_is_lost_with_the_hold_reason_and_removed(condor_gw: CondorGateways) -> None:
    site = condor_gw.site(min_warm=1, max_pilots=1, options={"extra_submit": {"hold": "true"}})
    gw = condor_gw.start(sites=[site])
    client = gw.client()

    def first_lost() -> tuple[str, str | None, str | None] | None:
        return next((r for r in _pilot_records(gw).values() if r[0] == "lost"), None)

    _, batch_id, reason = wait_until(first_lost, timeout=60)
    assert batch_id
    assert f"batch job {batch_id}" in (reason or "")
    assert "held: " in (reason or "")
    # the plugin removed the held job; it did not stay in the queue
    wait_until(lambda: batch_id not in site_jobs(condor_gw.bin_dir, site["name"]))
    client.close()
