"""Brokerage, fair share, resource retries, scouts and site status, on real local sites.

The same scenarios run against a real Slurm in ``test_slurm_scenarios.py``; here the sites
are ``local`` (subprocess pilots), which makes each scenario quick and independent of a
batch system. GPUs are declared, not present: brokerage only counts them.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import farside
from farside_protocol.errors import InvalidRequest
from support.harness import GatewayProcess, wait_until
from support.scenarios import last_start_of, two_users_submit_at_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CPU = {
    "name": "cpu",
    "cores": 1,
    "memory": "1 GiB",
    "min_warm": 0,
    "max_pilots": 2,
    "idle_timeout": 2,
}
GPU = {
    "name": "gpu",
    "cores": 1,
    "memory": "1 GiB",
    "gpus": 2,
    "gpu_model": "A100",
    "min_warm": 0,
    "max_pilots": 2,
    "idle_timeout": 2,
}


def _site(**settings: Any) -> dict[str, Any]:
    return {**CPU, **settings}


def test_job_no_site_can_run_fails_at_once_naming_the_requirement(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[CPU, GPU])
    client = gw.client()

    @farside.task(gateway=client, memory="64 GiB")
    def big() -> int:
        return 1

    with pytest.raises(InvalidRequest) as info:
        big.submit()
    message = str(info.value)
    assert "64 GiB of memory" in message
    assert "1 GiB" in message  # the most any site offers
    with pytest.raises(InvalidRequest, match="H100"):
        big.options(memory="100 MB", gpus=1, gpu_model="H100").submit()
    assert client.jobs() == []  # nothing half-submitted
    client.close()


def test_gpu_job_lands_on_the_gpu_site_and_never_on_the_cpu_site(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[CPU, GPU])
    client = gw.client()

    @farside.task(gateway=client, memory="100 MB")
    def where(x: int) -> int:
        return x

    gpu_jobs = where.options(gpus=2).map(range(3))
    cpu_jobs = where.map(range(3))
    assert list(gpu_jobs) == [0, 1, 2]
    assert list(cpu_jobs) == [0, 1, 2]
    for fut in gpu_jobs.futures:
        assert client.job(fut.job_id).site == "gpu"
    # the GPU site's pilots were started for GPU work only; CPU work found its own site
    assert {client.job(f.job_id).site for f in cpu_jobs.futures} <= {"cpu", "gpu"}
    assert any(p.site == "cpu" for p in client.pilots(all=True))
    client.close()


def test_out_of_memory_task_is_retried_with_more_memory_and_succeeds(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[_site(min_warm=1)])
    client = gw.client()

    @farside.task(gateway=client, memory="150 MiB")
    def hungry() -> int:
        block = "x" * (250 * 1024**2)  # really touched, so it is resident
        time.sleep(2)
        return len(block) // 1024**2

    assert hungry.submit().result(timeout=120) == 250
    (job,) = client.jobs(limit=1)
    detail = client.job(job.id)
    first, second = detail.attempt_list
    assert first.error_class == "resource"
    assert "out of memory" in (first.error or "")
    assert second.state == "finished"
    # and back, from the batch job (here the pilot's pid) to the jobs that ran in it
    assert first.batch_id is not None
    assert job.id in [j.id for j in client.jobs(batch_id=first.batch_id)]
    assert client.jobs(batch_id="no-such-batch-job") == []
    # at least doubled (or 1.5 times what it was seen using, if that is more)
    assert detail.resources.memory >= 300 * 1024**2
    assert detail.adjusted is not None
    assert "memory 150 MiB → " in detail.adjusted
    client.close()


def test_walltime_overrun_is_retried_with_more_walltime(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[_site(min_warm=1)])
    client = gw.client()

    @farside.task(gateway=client, memory="100 MB", walltime=2)
    def slow() -> str:
        time.sleep(3)
        return "done"

    assert slow.submit().result(timeout=120) == "done"
    (job,) = client.jobs(limit=1)
    detail = client.job(job.id)
    assert [a.error_class for a in detail.attempt_list] == ["resource", None]
    assert "walltime exceeded" in (detail.attempt_list[0].error or "")
    assert detail.resources.walltime == 4
    client.close()


def test_fair_share_both_users_progress_from_the_start(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[_site(min_warm=2, max_pilots=2)])
    alice = gw.client(gw.make_user_token("alice"))
    bob = gw.client(gw.make_user_token("bob"))
    wait_until(lambda: sum(1 for p in alice.pilots() if p.state == "running") == 2)

    owners = two_users_submit_at_once(alice, bob, many=100)
    last_bob = last_start_of(owners, "bob")
    # bob's 20 interleave with alice's 100 rather than waiting behind them (first in, first
    # out would start his last at 119): with equal shares all of his have started by the
    # time ~40 jobs have (60 leaves slack)
    assert last_bob < 60, owners[:80]
    assert "bob" in owners[:10]
    alice.close()
    bob.close()


def test_group_shares_come_from_the_token(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[_site(min_warm=1)], fair_share={"groups": {"atlas": 3, "cms": 1}}
    )
    carol = gw.client(gw.make_user_token("carol", groups=("atlas",)))
    assert carol.whoami().groups == ["atlas"]
    carol.close()


def test_offline_site_drains_its_work_to_another_site(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[_site(name="first", min_warm=2, max_pilots=2), _site(name="second")]
    )
    client = gw.client()
    admin = gw.client(gw.make_user_token("root", admin=True))

    @farside.task(gateway=client, memory="100 MB")
    def slow(x: int) -> int:
        time.sleep(4)
        return x

    futures = slow.map(range(2)).futures
    wait_until(lambda: all(client.job(f.job_id).state == "running" for f in futures))
    assert {client.job(f.job_id).site for f in futures} == {"first"}

    nobody = gw.client(gw.make_user_token("alice"))
    with pytest.raises(farside.FarsideError, match="admin"):
        nobody.set_site_status("first", "offline")
    nobody.close()
    site = admin.set_site_status("first", "offline", reason="maintenance")
    assert site.status == "offline"
    assert [f.result(timeout=120) for f in futures] == [0, 1]
    for fut in futures:
        detail = client.job(fut.job_id)
        assert detail.site == "second"
        assert detail.attempt_list[0].error_class == "system"
        assert detail.attempt_list[0].site == "first"
    (first,) = [s for s in client.sites() if s.name == "first"]
    assert first.status == "offline"
    assert first.status_reason == "maintenance"
    wait_until(lambda: not any(p.site == "first" for p in client.pilots()))
    # back online: pilots return to the warm minimum
    admin.set_site_status("first", "online")
    wait_until(lambda: sum(1 for p in client.pilots() if p.site == "first") == 2)
    client.close()
    admin.close()


def test_draining_site_takes_no_new_work(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[_site(name="only", min_warm=1)])
    client = gw.client()
    admin = gw.client(gw.make_user_token("root", admin=True))
    # registered, so that it could take the job below if draining did not stop it
    wait_until(lambda: [p.state for p in client.pilots()] == ["running"], timeout=60)
    admin.set_site_status("only", "draining")

    @farside.task(gateway=client, memory="100 MB")
    def one() -> int:
        return 1

    fut = one.submit()
    time.sleep(2)
    assert client.job(fut.job_id).state == "queued"
    admin.set_site_status("only", "online")
    assert fut.result(timeout=60) == 1
    client.close()
    admin.close()


def test_scouts_size_the_rest_of_a_large_map(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[_site(min_warm=2, max_pilots=2)],
        scouts={"threshold": 10, "count": 3, "min_memory": "64 MiB", "min_walltime": 30},
    )
    client = gw.client()

    def small(x: int) -> int:
        time.sleep(0.5 if x < 3 else 0.0)
        return x

    result = farside.task(small, gateway=client).map(range(12))
    # while the scouts run, the rest wait
    jobs = sorted(client.jobs(group=result.group), key=lambda j: j.id)
    assert [j.state.value for j in jobs[3:]] == ["pending"] * 9
    assert list(result) == list(range(12))
    jobs = sorted(client.jobs(group=result.group), key=lambda j: j.id)
    for job in jobs[3:]:
        assert job.adjusted is not None
        assert "scouts" in job.adjusted
        assert job.resources.memory < 1024**3  # 1 GiB by default, corrected down
        assert job.resources.walltime == 30  # the floor: scouts took well under a second
    assert all(j.adjusted is None for j in jobs[:3])
    history = client.job(jobs[5].id).history
    assert any(h.state == "queued" and "scouts done" in (h.reason or "") for h in history)

    # what the user fixed stays fixed
    fixed = farside.task(small, gateway=client, memory="200 MiB").map(range(12))
    assert list(fixed) == list(range(12))
    for job in client.jobs(group=fixed.group):
        assert job.resources.memory == 200 * 1024**2
    client.close()


def test_per_user_cap_on_running_jobs(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(
        sites=[_site(min_warm=3, max_pilots=3)],
        fair_share={"max_running_jobs_per_user": 1},
    )
    client = gw.client()
    wait_until(lambda: sum(1 for p in client.pilots() if p.state == "running") == 3)

    @farside.task(gateway=client, memory="100 MB")
    def nap(x: int) -> int:
        time.sleep(1)
        return x

    result = nap.map(range(3))
    most = 0
    while not all(f.done() for f in result.futures):
        held = [j for j in client.jobs(group=result.group) if j.state in ("assigned", "running")]
        most = max(most, len(held))
        time.sleep(0.05)
    assert list(result) == [0, 1, 2]
    assert most == 1  # three idle pilots, yet one job at a time
    client.close()
