"""A pilot's report of a job's GPU use (peak memory, mean utilisation) is kept with the
attempt and shown by ``farside job``."""

from __future__ import annotations

from typing import Any

import pytest

from support.authz import job, site_token_for, submit
from support.harness import DEFAULT_SETTINGS

pytestmark = [pytest.mark.integration]

#: a GPU site whose pilots are started by hand (here: played by the test)
GPU_SITE = {
    "name": "gpubox",
    "plugin": "local",
    "cores": 2,
    "memory": "4 GiB",
    "gpus": 1,
    "max_pilots": 0,
}


def test_gpu_use_is_kept_with_the_attempt(
    make_gateway: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = make_gateway(sites=[*DEFAULT_SETTINGS["sites"], GPU_SITE])
    (job_id,) = submit(gw, gw.user_token, job(resources={"gpus": 1}, sites=["gpubox"]))
    registration = {
        "site": "gpubox",
        "cores": 2,
        "memory": "4 GiB",
        "gpus": 1,
        "hostname": "gpu-node",
        "pid": 1,
        "version": "test",
    }
    with gw.http(site_token_for(gw, "gpubox")) as http:
        registered = http.post("/pilots", json=registration).json()
    pilot_id = registered["pilot_id"]
    with gw.http(registered["token"]) as http:
        acquire = {"max_jobs": 1, "cores": 2, "memory": "4 GiB", "gpus": 1, "wait": 5}
        (assigned,) = http.post(f"/pilots/{pilot_id}/acquire", json=acquire).json()["jobs"]
        assert assigned["job_id"] == job_id
        update = {
            "job_id": job_id,
            "attempt": 1,
            "state": "finished",
            "time": 1.0,
            "exit_code": 0,
            "result": "b2s=",
            "gpu_memory": 3 * 1024**3,
            "gpu_utilization": 87.5,
        }
        done = http.post(f"/pilots/{pilot_id}/report", json={"updates": [update], "logs": []})
        assert done.status_code == 200, done.text
    with gw.client() as client:
        (attempt,) = client.job(job_id).attempt_list
    assert (attempt.gpu_memory, attempt.gpu_utilization) == (3 * 1024**3, 87.5)

    from farside._cli import main

    capsys.readouterr()
    assert main(["job", str(job_id), "--url", gw.url, "--token", gw.user_token]) == 0
    assert "3 GiB, 88%" in capsys.readouterr().out
