"""Graph offload end to end: Dask collections computed as jobs on real gateway and pilots."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import operator
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import httpx
import numpy as np
import psutil
import pytest

import farside
from farside_protocol.models import API_PREFIX
from farside_protocol.payload import encode_value
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.dask]


class _Recording(httpx.HTTPTransport):
    """An ordinary transport that notes every request's method and path."""

    def __init__(self, seen: list[tuple[str, str]]) -> None:
        super().__init__()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path.removeprefix(API_PREFIX)))
        return super().handle_request(request)


@pytest.fixture
def recorded(gateway: GatewayProcess) -> Iterator[tuple[farside.Gateway, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    gw = farside.Gateway(gateway.url, token=gateway.user_token, transport=_Recording(seen))
    yield gw, seen
    gw.close()


def _result_gets(seen: list[tuple[str, str]]) -> set[int]:
    return {
        int(path.split("/")[2])
        for method, path in seen
        if method == "GET" and path.startswith("/jobs/") and path.endswith("/result")
    }


def test_collections_match_the_local_scheduler(
    recorded: tuple[farside.Gateway, list[tuple[str, str]]],
) -> None:
    gw, _ = recorded
    x = da.from_array(np.arange(36.0).reshape(6, 6), chunks=3)
    array = (x + x.T).sum()
    bag = (
        db.from_sequence(range(40), npartitions=4)
        .map(lambda v: v * 3)
        .filter(lambda v: v % 2 == 0)
        .fold(operator.add)
    )
    load = dask.delayed(lambda n: list(range(n)), pure=True)(10)
    diamond = dask.delayed(operator.truediv)(dask.delayed(sum)(load), dask.delayed(len)(load))

    expected = dask.compute(array, bag, diamond, scheduler="threads")
    assert dask.compute(array, bag, diamond, scheduler=gw.offload) == expected
    assert array.compute(scheduler=gw.offload) == expected[0]
    assert gw.compute(bag, group="the-bag") == (expected[1],)
    # one job per partition chain, and one for the fold's aggregate: not one per task
    assert len(gw.jobs(group="the-bag")) == 4 + 1
    assert len(bag.__dask_graph__()) > 4 * 3


def test_chains_of_tasks_become_one_job_each(client: farside.Gateway) -> None:
    def step(value: int, k: int) -> int:
        print(f"step {k} of {value}")
        return value * 2 + k

    chains = []
    for start in range(3):
        value: Any = start
        for k in range(4):
            value = dask.delayed(step)(value, k)
        chains.append(value)
    total = dask.delayed(sum)(chains)

    assert dask.compute(total, scheduler=client.offload, group="chains") == dask.compute(total)
    jobs = client.jobs(group="chains")
    assert len(jobs) == 3 + 1  # 13 tasks: three chains of four, and the sum
    assert all(job.state == "finished" and job.attempts == 1 for job in jobs)
    # each chain's job printed its four steps, in order, into its own log
    chain_logs = sorted(client.logs(job.id) for job in jobs if job.id != max(j.id for j in jobs))
    assert chain_logs == [
        [f"step {k} of {v}" for k, v in enumerate(values)]
        for values in ([0, 0, 1, 4], [1, 2, 5, 12], [2, 4, 9, 20])
    ]


def test_dataframe_groupby_aggregation(client: farside.Gateway) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    frame = pd.DataFrame({"k": [i % 4 for i in range(200)], "v": np.arange(200.0)})
    agg = dd.from_pandas(frame, npartitions=5).groupby("k").v.agg(["sum", "mean", "count"])
    (got,) = client.compute(agg)
    pd.testing.assert_frame_equal(got.sort_index(), agg.compute(scheduler="threads").sort_index())


def test_intermediate_results_never_reach_the_client(
    gateway: GatewayProcess, recorded: tuple[farside.Gateway, list[tuple[str, str]]]
) -> None:
    gw, seen = recorded
    # two intermediates too large for the database (they go through the blob store), one
    # small enough to ride the event stream if it were the notebook's
    sizes = [2_000_000, 1_500_000, 10]
    parts = [dask.delayed(lambda n: b"x" * n)(n) for n in sizes]
    total = dask.delayed(lambda *blobs: [len(b) for b in blobs])(*parts)

    assert dask.compute(total, scheduler=gw.offload, group="sizes") == (sizes,)
    jobs = {job.id: job for job in gw.jobs(group="sizes")}
    final = max(jobs)
    assert len(jobs) == 4
    assert _result_gets(seen) <= {final}  # the final one may also have ridden inline

    # what the event stream carried: sizes of intermediates, never their bytes
    carried = _terminal_events(gateway, set(jobs))
    assert carried[final]["result"] is not None
    for job_id in set(jobs) - {final}:
        assert carried[job_id]["result"] is None
        assert carried[job_id]["result_size"] > 0


def _terminal_events(gateway: GatewayProcess, job_ids: set[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    params = {"since": 0, "terminal_only": "true"}
    with (
        gateway.http(gateway.user_token) as http,
        http.stream("GET", "/events", params=params) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("data:") and '"events"' in line:
                for event in json.loads(line[5:])["events"]:
                    if event["job_id"] in job_ids:
                        found[event["job_id"]] = event
            if set(found) == job_ids or time.monotonic() > deadline:
                break
    assert set(found) == job_ids
    return found


def _divide(a: float, b: float) -> float:
    return a / b


def test_a_failing_task_raises_its_exception(client: farside.Gateway) -> None:
    with pytest.raises(ZeroDivisionError) as info:
        dask.compute(dask.delayed(_divide)(1, 0), scheduler=client.offload)
    assert "Remote traceback" in "\n".join(getattr(info.value, "__notes__", []))

    # deep in the graph: the jobs after it fail as dependencies, the cause is raised
    bad = dask.delayed(_divide)(1, 0)
    both = dask.delayed(operator.add)(dask.delayed(abs)(bad), dask.delayed(round)(bad))
    with pytest.raises(ZeroDivisionError):
        dask.compute(both, scheduler=client.offload, group="deep")
    states = sorted((job.state, job.error_class) for job in client.jobs(group="deep"))
    assert states[0] == ("failed", "dependency")
    assert ("failed", "user") in states


def test_chunks_too_large_to_pass_on_say_so(make_gateway: Any) -> None:
    gw: GatewayProcess = make_gateway(max_result_size=1_000_000)
    client = gw.client()
    x = da.random.random((1000, 1000), chunks=500)  # 2 MB chunks, each needed twice
    with pytest.raises(farside.JobFailed, match="use smaller chunks") as info:
        client.compute((x + x.T).sum())
    assert "over its limit of 1000000 bytes" in str(info.value)
    # the same graph with chunks that fit goes through
    y = da.random.random((1000, 1000), chunks=250)
    (total,) = client.compute((y + y.T).sum())
    assert 0.9e6 < total < 1.1e6
    client.close()


def test_dask_callbacks_and_a_bar_follow_the_offload(
    client: farside.Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    from dask.callbacks import Callback
    from dask.diagnostics import ProgressBar

    bag = db.from_sequence(range(40), npartitions=8).map(lambda x: x + 1).sum()
    ended: list[Any] = []
    finished: list[bool] = []

    class Record(Callback):  # type: ignore[misc]
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
            ended.append(key)

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            finished.append(errored)

    out = io.StringIO()
    with ProgressBar(out=out, minimum=0, dt=0.05), Record():
        (total,) = client.compute(bag, group="with-callbacks")
    assert total == sum(range(1, 41))
    assert "100%" in out.getvalue()
    jobs = client.jobs(group="with-callbacks")
    assert len(ended) >= len(jobs)  # every task of every part, each once
    assert len(ended) == len(set(ended))
    assert finished == [False]
    capsys.readouterr()
    (total,) = client.compute(bag, progress=True, group="with-bar")
    assert f"{len(jobs)}/{len(jobs)}" in capsys.readouterr().err


def test_unknown_option_says_what_is_accepted(client: farside.Gateway) -> None:
    with pytest.raises(TypeError, match="memory"):
        dask.compute(dask.delayed(abs)(-1), scheduler=client.offload, memroy="2 GiB")
    with dask.config.set({"farside.offload": {"memory": "300 MiB", "walltime": "5m"}}):
        assert client.compute(dask.delayed(abs)(-1), group="configured") == (1,)
    (job,) = client.jobs(group="configured")
    assert (job.resources.memory, job.resources.walltime) == (300 * 1024**2, 300)


def test_a_killed_pilot_costs_only_the_jobs_it_held(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    started = tmp_path / "started"

    def load(i: int) -> int:
        time.sleep(0.3)  # long enough that pilots do not prefetch behind it
        return i + 1

    def work(value: int, i: int) -> int:
        if i == 0 and not started.exists():
            started.write_text("")
            pilot = os.getppid()
            while os.getppid() == pilot:  # until the pilot above this worker is gone
                time.sleep(0.1)
        return value * 10

    total = dask.delayed(sum)([dask.delayed(work)(dask.delayed(load)(i), i) for i in range(3)])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(dask.compute, total, scheduler=client.offload, group="kill")

        def blocked() -> list[Any]:
            jobs = client.jobs(group="kill")
            finished = sum(job.state == "finished" for job in jobs)
            held = [job for job in jobs if job.state == "running"]
            return held if started.exists() and finished == 2 and len(held) == 1 else []

        (victim,) = wait_until(blocked, timeout=90)
        pilot = next(p for p in client.pilots() if p.id == victim.pilot_id)
        assert pilot.batch_id is not None
        _talks_only_to_the_gateway(int(pilot.batch_id), gateway.port)
        os.kill(int(pilot.batch_id), signal.SIGKILL)
        assert running.result(timeout=120) == ((1 + 2 + 3) * 10,)

    jobs = client.jobs(group="kill")
    assert len(jobs) == 4
    retried = [job for job in jobs if job.attempts > 1]
    assert [job.id for job in retried] == [victim.id]
    first = client.job(victim.id).attempt_list[0]
    assert (first.pilot_id, first.error_class) == (victim.pilot_id, "system")
    assert all(job.attempts == 1 and job.state == "finished" for job in jobs if job not in retried)


def _talks_only_to_the_gateway(pilot_pid: int, port: int) -> None:
    """The pilot and its workers (its child processes) hold connections to the gateway
    only, and listen on none: a worker node needs to reach nothing but the gateway."""
    pilot = psutil.Process(pilot_pid)
    processes = [pilot, *pilot.children(recursive=True)]
    assert len(processes) > 1, "the pilot has no worker process"
    connections = [c for p in processes for c in _inet(p)]
    assert connections, "the pilot holds no connection at all"
    for conn in connections:
        assert conn.status != psutil.CONN_LISTEN, conn
        assert conn.raddr, conn
        assert conn.raddr.port == port, conn


def _inet(process: psutil.Process) -> list[Any]:
    try:
        return list(process.net_connections(kind="inet"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _job(**fields: Any) -> dict[str, Any]:
    return {"payload": "eA==", **fields}


@pytest.fixture
def idle_gateway(make_gateway: Any) -> GatewayProcess:
    """No pilots: the test plays the pilot."""
    return make_gateway(sites=[{"name": "local", "min_warm": 0, "max_pilots": 0}])


def test_inputs_are_checked_and_served_to_the_pilot_holding_the_child(
    idle_gateway: GatewayProcess,
) -> None:
    gw = idle_gateway
    bob = gw.make_user_token("bob")
    with gw.http(gw.user_token) as user, gw.http(bob) as other, gw.http() as http:
        parent, unrelated = user.post("/jobs", json={"jobs": [_job(), _job()]}).json()["job_ids"]
        refused = user.post("/jobs", json={"jobs": [_job(after=[parent], inputs=[unrelated])]})
        assert refused.status_code == 422
        assert f"inputs [{unrelated}] are not in after" in refused.json()["error"]["message"]
        (bobs,) = other.post("/jobs", json={"jobs": [_job()]}).json()["job_ids"]
        refused = user.post("/jobs", json={"jobs": [_job(after=[bobs], inputs=[bobs])]})
        assert refused.status_code == 422
        assert "not found among your jobs" in refused.json()["error"]["message"]

        body = {"jobs": [_job(after=[parent, unrelated], inputs=[parent])]}
        (child,) = user.post("/jobs", json=body).json()["job_ids"]
        assert user.get(f"/jobs/{child}").json()["inputs"] == [parent]

        register = {
            "site": "local",
            "cores": 1,
            "memory": "1 GiB",
            "hostname": "t",
            "pid": 1,
            "version": "t",
        }
        reg = http.post(
            "/pilots", json=register, headers={"Authorization": f"Bearer {gw.site_token}"}
        )
        pilot_id, auth = reg.json()["pilot_id"], {"Authorization": f"Bearer {reg.json()['token']}"}
        acquire = {"max_jobs": 10, "cores": 1, "memory": "1 GiB"}
        got = http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth).json()["jobs"]
        assert sorted(j["job_id"] for j in got) == [parent, unrelated, bobs]
        assert all(j["inputs"] == [] for j in got)
        outcome = encode_value({"answer": 42})
        done = [
            {
                "job_id": j,
                "attempt": 1,
                "state": "finished",
                "time": 1.0,
                "exit_code": 0,
                "result": base64.b64encode(outcome).decode(),
            }
            for j in (parent, unrelated, bobs)
        ]
        http.post(f"/pilots/{pilot_id}/report", json={"updates": done}, headers=auth)
        (held,) = http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth).json()[
            "jobs"
        ]
        assert (held["job_id"], held["inputs"]) == (child, [parent])

        base = f"/pilots/{pilot_id}/jobs"
        served = http.get(f"{base}/{child}/inputs/{parent}", headers=auth)
        assert served.status_code == 200
        assert served.content == outcome
        # a parent it waits for but does not take, and a job the pilot no longer holds
        assert http.get(f"{base}/{child}/inputs/{unrelated}", headers=auth).status_code == 404
        assert http.get(f"{base}/{parent}/inputs/{parent}", headers=auth).status_code == 409
        # the user's own view of a parent's result is unchanged
        assert user.get(f"/jobs/{parent}/result").content == outcome
