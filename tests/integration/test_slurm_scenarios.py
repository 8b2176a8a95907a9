"""Brokerage on a real Slurm: GPU partition, impossible jobs, out-of-memory retries, fair
share and a site taken offline — the scenarios of ``test_brokerage.py`` where the pilots
are Slurm batch jobs (``scripts/slurm.sh`` starts the cluster: one node, partitions ``cpu``
and ``gpu``, four count-only GPUs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import farside
from farside_protocol.errors import InvalidRequest
from support.harness import GatewayProcess, wait_until
from support.scenarios import last_start_of, two_users_submit_at_once
from support.slurm import site_jobs, slurm_site

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def database_url() -> None:
    """SQLite only: brokerage on PostgreSQL is covered by test_brokerage.py."""
    return None


@pytest.fixture
def two_sites(
    slurm_cluster: Path, make_gateway: Callable[..., GatewayProcess]
) -> Iterator[tuple[GatewayProcess, Any, str, str]]:
    """A gateway with a CPU site and a GPU site (2 GPUs per pilot) on the same Slurm."""
    cpu = slurm_site(max_pilots=4)
    gpu = slurm_site(gpus=2, max_pilots=2, options={"partition": "gpu"})
    gw = make_gateway(sites=[cpu, gpu])
    client = gw.client()
    yield gw, client, cpu["name"], gpu["name"]
    client.close()


def test_two_gpu_job_lands_on_the_gpu_partition_never_the_cpu_site(two_sites) -> None:  # type: ignore[no-untyped-def]
    _, client, cpu, gpu = two_sites

    @farside.task(gateway=client, memory="100 MB", gpus=2)
    def visible() -> str:
        import os

        return os.environ.get("CUDA_VISIBLE_DEVICES", "")

    futures = [visible.submit() for _ in range(3)]
    seen_gpu_jobs: dict[str, tuple[str, str]] = {}

    def all_done() -> bool:
        seen_gpu_jobs.update(site_jobs(gpu))
        return all(f.done() for f in futures)

    wait_until(all_done, timeout=120)
    # Slurm granted each pilot two of the node's four GPUs
    assert all(len(f.result().split(",")) == 2 for f in futures), [f.result() for f in futures]
    for fut in futures:
        assert client.job(fut.job_id).site == gpu
    assert seen_gpu_jobs  # the pilots were jobs of the gpu site
    assert not site_jobs(cpu, "--states=all")  # nothing was started on the CPU site


def test_job_needing_more_memory_than_any_site_fails_at_once(two_sites) -> None:  # type: ignore[no-untyped-def]
    _, client, _, _ = two_sites

    @farside.task(gateway=client, memory="2 GiB")
    def big() -> int:
        return 1

    with pytest.raises(InvalidRequest, match=r"2 GiB of memory; the most any site offers is 1 GiB"):
        big.submit()


def test_out_of_memory_task_is_retried_with_more_memory(slurm_cluster: Path, make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[slurm_site(max_pilots=2)])
    client = gw.client()

    @farside.task(gateway=client, memory="120 MiB")
    def hungry() -> int:
        block = "x" * (200 * 1024**2)
        time.sleep(2)
        return len(block) // 1024**2

    assert hungry.submit().result(timeout=180) == 200
    (job,) = client.jobs(limit=1)
    detail = client.job(job.id)
    first, last = detail.attempt_list[0], detail.attempt_list[-1]
    assert first.error_class == "resource"
    assert "out of memory" in (first.error or "")
    assert first.batch_id is not None  # the attempt names its pilot's Slurm job
    assert last.state == "finished"
    assert detail.resources.memory >= 240 * 1024**2
    client.close()


def test_fair_share_both_users_progress_from_the_start(slurm_cluster: Path, make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(sites=[slurm_site(max_pilots=4, idle_timeout=5)])
    alice = gw.client(gw.make_user_token("alice"))
    bob = gw.client(gw.make_user_token("bob"))

    owners = two_users_submit_at_once(alice, bob, nap=0.1, many=120)
    last_bob = last_start_of(owners, "bob")
    assert last_bob < 80, owners[:100]  # bob's 20 did not wait behind alice's 120 (at 120+)
    alice.close()
    bob.close()


def test_offline_site_drains_its_work_to_another_site(slurm_cluster: Path, make_gateway) -> None:  # type: ignore[no-untyped-def]
    first = slurm_site(min_warm=2, max_pilots=2)
    second = slurm_site(max_pilots=2)
    gw: GatewayProcess = make_gateway(sites=[first, second])
    client = gw.client()  # the local platform's user is an admin

    @farside.task(gateway=client, memory="100 MB")
    def slow(x: int) -> int:
        time.sleep(5)
        return x

    futures = slow.map(range(2)).futures
    wait_until(lambda: all(client.job(f.job_id).state == "running" for f in futures), 120)
    assert {client.job(f.job_id).site for f in futures} == {first["name"]}
    client.set_site_status(first["name"], "offline", reason="maintenance")
    assert [f.result(timeout=180) for f in futures] == [0, 1]
    for fut in futures:
        detail = client.job(fut.job_id)
        assert detail.site == second["name"]
        assert detail.attempt_list[0].error_class == "system"
    # its pilots' batch jobs are gone from the queue
    wait_until(lambda: not site_jobs(first["name"]), timeout=60)
    client.close()
