"""Live stack dumps of running jobs (`farside debug`, PanDA's debug mode done live)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import farside
from farside_protocol import Conflict
from support.harness import GatewayProcess, wait_until

pytestmark = pytest.mark.integration


def test_a_running_jobs_stack_reaches_its_owner(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    def innermost_wait(seconds: float) -> None:
        time.sleep(seconds)

    @farside.task(gateway=client, memory="200 MB")
    def long_fit(seconds: float) -> str:
        print("fitting")
        innermost_wait(seconds)
        return "done"

    fut = long_fit.submit(60)
    wait_until(lambda: client.job(fut.job_id).state is farside.JobState.RUNNING, timeout=60)
    dump = client.debug(fut, timeout=30)
    text = "\n".join(dump)
    assert "(most recent call first)" in text
    # the job's own frames, innermost first, with the file the functions were written in
    assert text.index("innermost_wait") < text.index("long_fit")
    assert __file__ in text
    # the dump is in the job's log too, after what it printed
    log = client.logs(fut.job_id)
    assert log[0] == "fitting"
    assert any("innermost_wait" in line for line in log)
    # from the command line, as its owner
    out = subprocess.run(
        [sys.executable, "-m", "farside", "debug", str(fut.job_id)],
        env={**_env(gateway)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "innermost_wait" in out
    fut.cancel()
    # a job that is not running has no stack to dump; another user's job is not found
    with pytest.raises(Conflict, match="only a running job"):
        client.debug(fut.job_id, timeout=5)
    other = farside.Gateway(
        gateway.url, token=gateway.make_user_token("mallory"), set_as_default=False
    )
    with pytest.raises(farside.NotFound):
        other.debug(fut.job_id, timeout=5)
    other.close()


def _env(gateway: GatewayProcess) -> dict[str, str]:
    import os

    return {**os.environ, "FARSIDE_GATEWAY_URL": gateway.url, "FARSIDE_TOKEN": gateway.user_token}
