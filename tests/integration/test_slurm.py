"""The slurm site against the real Slurm that ``scripts/slurm.sh`` starts.

Pilots are Slurm batch jobs: they show in squeue under their pilot's name, their job ids
are the pilots' batch ids, and what Slurm does to a job (scancel, a refused partition, an
idle pilot leaving) shows up in farside the way the plugin contract says.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import farside
from farside_protocol.models import PilotInfo
from support.harness import GatewayProcess, wait_until
from support.slurm import site_jobs, slurm_site, squeue

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def database_url() -> None:
    """SQLite only: the plugin does not touch the database; PostgreSQL is tested elsewhere."""
    return None


@pytest.fixture
def slurm_gateway(
    slurm_cluster: Path, make_gateway: Callable[..., GatewayProcess]
) -> Callable[..., tuple[GatewayProcess, Any, str]]:
    """Factory: a gateway with one Slurm site; its process, a client and the site's name."""

    def make(**site: Any) -> tuple[GatewayProcess, Any, str]:
        config = slurm_site(**site)
        gw = make_gateway(sites=[config])
        return gw, gw.client(), config["name"]

    return make


def all_pilots(gw: GatewayProcess) -> list[PilotInfo]:
    """Every pilot record, ended ones too (the client lists live pilots only)."""
    with gw.http(gw.user_token) as http:
        response = http.get("/pilots", params={"all": "true"})
        response.raise_for_status()
        return [PilotInfo.model_validate(p) for p in response.json()]


def test_map_runs_on_pilots_that_are_slurm_jobs(slurm_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, client, site = slurm_gateway()

    @farside.task(gateway=client, memory="100 MB")
    def square(x: int) -> int:
        time.sleep(0.3)
        return x * x

    results = square.map(range(50))

    # while it runs, the pilots are Slurm jobs named after their pilot records
    def running_pilots() -> dict[str, tuple[str, int]]:
        running = site_jobs(site, "--states=RUNNING")
        live = {p.batch_id: p.id for p in client.pilots()}
        if running and running.keys() <= live.keys():
            return {i: (name, live[i]) for i, (name, _) in running.items()}
        return {}

    for name, pilot_id in wait_until(running_pilots, timeout=60).values():
        assert name == f"farside-{site}-{pilot_id}"
    assert list(results) == [x * x for x in range(50)]

    pilots = all_pilots(gw)
    assert pilots
    assert all(p.batch_id and p.batch_id.isdigit() for p in pilots)
    known = site_jobs(site, "--states=all")
    for pilot in pilots:
        assert known[pilot.batch_id] == (f"farside-{site}-{pilot.id}", known[pilot.batch_id][1])
    batch_ids = {p.batch_id for p in pilots}
    jobs = client.jobs(limit=50)
    assert len(jobs) == 50
    for job in jobs:
        assert client.job(job.id).attempt_list[-1].batch_id in batch_ids
    client.close()


def test_idle_pilots_leave_squeue(slurm_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, client, site = slurm_gateway(max_pilots=3)

    @farside.task(gateway=client, memory="100 MB")
    def one(x: int) -> int:
        return x

    assert list(one.map(range(6))) == list(range(6))
    assert site_jobs(site, "--states=all")
    # idle past idle_timeout (2 s) with min_warm 0: the pilots retire, their jobs end
    wait_until(lambda: not site_jobs(site), timeout=60, interval=0.5)
    ended = site_jobs(site, "--states=all")
    assert ended
    assert {state for _, state in ended.values()} == {"COMPLETED"}
    assert not client.pilots()
    assert {p.batch_id for p in all_pilots(gw)} == set(ended)
    client.close()


def test_gateway_stop_ends_its_pilot_jobs(slurm_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, client, site = slurm_gateway(min_warm=2, max_pilots=2)
    wait_until(lambda: len([p for p in client.pilots() if p.registered]) == 2, timeout=90)
    client.close()
    assert len(site_jobs(site)) == 2
    gw.stop()  # without --keep-pilots: the pilots are stopped before the gateway exits
    ended = site_jobs(site, "--states=all")
    assert len(ended) == 2
    # SIGTERM reached the pilots, which left in order: their jobs completed, none cancelled
    assert {state for _, state in ended.values()} == {"COMPLETED"}


def _sleep_once(marker: str) -> str:
    """Sleeps 20 s the first time (until its pilot is killed), returns at once after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("started")
        time.sleep(20)
    return "done"


def _run_until_its_pilot_job_is(
    killed_by: list[str], client: Any, tmp_path: Path
) -> tuple[Any, str]:
    """Start a job that sleeps, then end its pilot's Slurm job with ``killed_by`` + id."""
    marker = tmp_path / "started"
    task = farside.task(gateway=client, memory="100 MB", max_attempts=1)(_sleep_once)
    future = task.submit(str(marker))
    wait_until(lambda: marker.exists() and client.job(future.job_id).state == "running", timeout=90)
    batch_id = client.job(future.job_id).attempt_list[-1].batch_id
    assert batch_id in squeue()
    subprocess.run([*killed_by, batch_id], check=True)
    return future, batch_id


def _assert_retried_as_system_error(client: Any, future: Any, batch_id: str) -> None:
    assert future.result(timeout=120) == "done"  # max_attempts=1: the user's one attempt
    detail = client.job(future.job_id)
    first, last = detail.attempt_list[0], detail.attempt_list[-1]
    assert first.batch_id == batch_id
    assert first.error_class == "system", first
    reasons = [first.error or ""] + [h.reason or "" for h in detail.history]
    assert any(batch_id in reason for reason in reasons), reasons
    assert last.batch_id != batch_id
    assert last.state == "finished"


def test_scancel_of_a_busy_pilot_retries_its_job(slurm_gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Plain scancel SIGTERMs every process of the batch job, the job's worker too: the
    pilot counts that as the site's doing (system), not the user's."""
    _, client, _ = slurm_gateway(max_pilots=2)
    future, batch_id = _run_until_its_pilot_job_is(["scancel"], client, tmp_path)
    _assert_retried_as_system_error(client, future, batch_id)
    client.close()


def test_killed_pilot_job_is_lost_and_its_job_retried(slurm_gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The pilot dies without a word (SIGKILL to the batch shell, which is the pilot): the
    plugin sees the job gone, and the gateway retries the job as a system error."""
    _, client, _ = slurm_gateway(max_pilots=2)
    kill = ["scancel", "--batch", "--signal=KILL"]
    future, batch_id = _run_until_its_pilot_job_is(kill, client, tmp_path)
    _assert_retried_as_system_error(client, future, batch_id)
    client.close()


def test_unknown_option_stops_the_gateway_at_start(slurm_cluster: Path, make_gateway) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match=r"options\.partion: Extra inputs are not permitted"):
        make_gateway(sites=[slurm_site(options={"partion": "cpu"})])


def test_partition_slurm_refuses_is_reported(slurm_gateway) -> None:  # type: ignore[no-untyped-def]
    gw, client, site = slurm_gateway(options={"partition": "nosuch"})
    log = gw.log_path
    assert "partition 'nosuch' is not among Slurm's" in log.read_text()

    @farside.task(gateway=client, memory="100 MB")
    def one() -> int:
        return 1

    future = one.submit()
    wait_until(lambda: "invalid partition specified: nosuch" in log.read_text(), timeout=60)
    assert "sbatch refused pilot" in log.read_text()
    failed = wait_until(lambda: [p for p in all_pilots(gw) if p.state == "failed"])
    assert all(p.batch_id is None for p in failed)
    assert client.job(future.job_id).state == "queued"
    assert not site_jobs(site, "--states=all")
    (info,) = [s for s in client.sites() if s.name == site]
    assert "invalid partition" in (info.last_error or "")
    client.close()


def test_gpu_partition_takes_gres(slurm_cluster: Path) -> None:
    """What a site with ``gpus = 2`` and ``partition = "gpu"`` asks of sbatch is accepted."""
    done = subprocess.run(
        ["sbatch", "--test-only", "--partition=gpu", "--gres=gpu:2", "--wrap=true"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        ["sbatch", "--test-only", "--partition=gpu", "--gres=gpu:5", "--wrap=true"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0  # the node has 4
