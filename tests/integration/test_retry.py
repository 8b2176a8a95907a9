"""Retrying a job with changed options (`gw.retry`, `farside retry`): kill and run again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import farside
from farside_protocol import JobState
from support.harness import GatewayProcess, wait_until

pytestmark = pytest.mark.integration


def test_a_running_job_is_stopped_and_run_again_with_more(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    go = tmp_path / "go"

    @farside.task(gateway=client, memory="200 MB", walltime="10 minutes")
    def wait_for_go() -> str:
        while not go.exists():
            time.sleep(0.05)
        return "ran"

    old = wait_for_go.submit()
    wait_until(lambda: client.job(old.job_id).state is JobState.RUNNING, timeout=60)
    new = client.retry(old, memory="300 MiB", walltime="20 minutes")
    assert new.job_id != old.job_id
    go.touch()
    assert new.result(timeout=60) == "ran"
    detail = client.job(new.job_id)
    assert (detail.resources.memory, detail.resources.walltime) == (300 * 1024**2, 1200)
    assert (detail.name, detail.group) == (client.job(old.job_id).name, None)
    stopped = client.job(old.job_id)
    assert stopped.state is JobState.CANCELLED
    assert stopped.history[-1].reason == f"retried with changed options as job {new.job_id}"

    # an ended job is run again as it was, but for what is changed; from the command line too
    out = subprocess.run(
        [sys.executable, "-m", "farside", "retry", str(new.job_id), "--cores", "1"],
        env={**os.environ, "FARSIDE_GATEWAY_URL": gateway.url, "FARSIDE_TOKEN": gateway.user_token},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    third = int(out.strip().rsplit(" ", 1)[1])
    wait_until(lambda: client.job(third).state is JobState.FINISHED, timeout=60)
    assert client.job(new.job_id).state is JobState.FINISHED  # not touched


def test_a_retry_no_site_can_run_is_refused_and_changes_nothing(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.task(gateway=client, memory="100 MB")
    def one() -> int:
        return 1

    done = one.submit()
    assert done.result(timeout=60) == 1
    with pytest.raises(farside.InvalidRequest, match="can run on no site"):
        client.retry(done, cores=999)
    with pytest.raises(ValueError, match="cannot parse memory"):  # checked here, as for tasks
        client.retry(done, memory="lots")
    other = farside.Gateway(
        gateway.url, token=gateway.make_user_token("mallory"), set_as_default=False
    )
    with pytest.raises(farside.NotFound):
        other.retry(done.job_id)
    other.close()
    assert [j.id for j in client.jobs()] == [done.job_id]
