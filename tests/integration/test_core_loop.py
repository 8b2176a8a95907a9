"""The core loop end to end: notebook function → job → pilot → result, log and future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import time

import pytest

import farside
from farside_protocol import JobState
from support.harness import GatewayProcess, wait_until

pytestmark = pytest.mark.integration


def test_submit_map_logs_and_job_list(gateway: GatewayProcess, client: farside.Gateway) -> None:
    @farside.task(cores=1, memory="1 GiB", walltime="10m", gateway=client)
    def square(x: int) -> int:
        print("squaring", x)
        return x * x

    fut = square.submit(3)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 9
    assert list(square.map(range(100))) == [x * x for x in range(100)]
    assert list(client.logs(fut.job_id, follow=True)) == ["squaring 3"]

    info = next(j for j in client.jobs() if j.id == fut.job_id)
    assert info.state is JobState.FINISHED
    assert info.site == "local"
    assert info.attempts == 1
    assert info.exit_code == 0
    assert info.created <= info.started <= info.ended
    assert info.max_rss is not None
    assert info.max_rss > 1_000_000
    assert info.cpu_time is not None
    assert info.wall_time is not None


def test_future_is_awaitable(client: farside.Gateway) -> None:
    @farside.task(gateway=client)
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> list[int]:
        return list(await asyncio.gather(add.submit(1, 2), add.submit(3, 4)))

    assert asyncio.run(main()) == [3, 7]


def test_closure_from_a_cell_travels_by_value(client: farside.Gateway) -> None:
    offset = 1000
    table = {"a": 1, "b": 2}

    def lookup(key: str) -> int:  # a closure over local state, as in a notebook cell
        return table[key] + offset

    assert client.submit(lookup, "b").result(timeout=30) == 1002


def test_remote_exception_reraises_with_type_and_traceback(client: farside.Gateway) -> None:
    @farside.task(gateway=client)
    def divide(a: int, b: int) -> float:
        return a / b

    with pytest.raises(ZeroDivisionError) as info:
        divide.submit(1, 0).result(timeout=30)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes
    assert "return a / b" in notes
    job = client.jobs(limit=1)[0]
    assert job.state is JobState.FAILED
    assert job.error_class == "user"
    assert job.attempts == 1  # user errors are not retried unless asked


def test_exception_type_not_importable_here_becomes_remote_error(
    client: farside.Gateway,
) -> None:
    def raise_custom() -> None:
        import types

        module = types.ModuleType("only_on_the_pilot")
        exec("class SiteTrouble(Exception):\n    pass", module.__dict__)
        import sys

        sys.modules["only_on_the_pilot"] = module
        raise module.SiteTrouble("disk full on the worker node")

    with pytest.raises(farside.RemoteError) as info:
        client.submit(raise_custom).result(timeout=30)
    assert info.value.type_name == "only_on_the_pilot.SiteTrouble"
    assert "disk full on the worker node" in str(info.value)
    assert "raise module.SiteTrouble" in info.value.remote_traceback


def test_user_errors_retry_only_when_asked(client: farside.Gateway, tmp_path) -> None:
    marker = tmp_path / "attempts"

    @farside.task(gateway=client, max_attempts=3)
    def flaky() -> str:
        count = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(count))
        if count < 3:
            raise RuntimeError(f"attempt {count} fails")
        return "third time lucky"

    fut = flaky.submit()
    assert fut.result(timeout=60) == "third time lucky"
    detail = client.job(fut.job_id)
    assert [a.error_class for a in detail.attempt_list] == ["user", "user", None]
    assert [a.state for a in detail.attempt_list] == ["failed", "failed", "finished"]


def test_cancel_queued_and_running(gateway: GatewayProcess, client: farside.Gateway) -> None:
    @farside.task(gateway=client)
    def sleepy(seconds: float) -> str:
        print("going to sleep", flush=True)
        time.sleep(seconds)
        return "woke up"

    running = [sleepy.submit(60) for _ in range(2)]  # both warm pilots busy
    queued = sleepy.submit(60)
    # both warm pilots (started with the gateway, not awaited) must come up first
    wait_until(lambda: all(client.job(f.job_id).state == "running" for f in running), timeout=60)
    assert client.job(queued.job_id).state == "queued"

    assert queued.cancel()
    assert running[0].cancel()
    assert queued.cancelled()
    assert running[0].cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        running[0].result(timeout=1)
    assert client.job(queued.job_id).state == "cancelled"
    assert client.job(running[0].job_id).state == "cancelled"

    # the pilot killed the cancelled work and is free again: a new job runs on it
    @farside.task(gateway=client)
    def quick() -> str:
        return "done"

    assert quick.submit().result(timeout=30) == "done"
    running[1].cancel()


def test_logs_follow_streams_while_running(client: farside.Gateway) -> None:
    @farside.task(gateway=client)
    def chatty() -> int:
        for i in range(5):
            print("line", i, flush=True)
            # spread wide enough that lines printed before the test starts following (the
            # job's "running" report can lag under load) cannot close the gap asserted below
            time.sleep(0.6)
        return 5

    fut = chatty.submit()
    wait_until(lambda: client.job(fut.job_id).state in ("running", "finished"))
    arrivals = []
    for line in client.logs(fut.job_id, follow=True):
        arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == [f"line {i}" for i in range(5)]
    # lines came while the job ran, not all at its end
    assert arrivals[-1][0] - arrivals[0][0] > 0.6
    assert fut.result(timeout=30) == 5


def test_large_arguments_and_results_use_the_blob_store(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB, over the 256 KiB inline limit

    @farside.task(gateway=client)
    def echo_twice(data: bytes) -> bytes:
        return data + data

    assert echo_twice.submit(blob).result(timeout=60) == blob + blob
    stored = list((gateway.state_dir / "blobs").rglob("*"))
    assert any(p.is_file() and p.parent.name == "payloads" for p in stored)
    assert any(p.is_file() and p.parent.name == "results" for p in stored)


def test_gateway_down_is_reported_plainly() -> None:
    with pytest.raises(farside.GatewayUnreachable) as info:
        farside.Gateway("http://127.0.0.1:9", token="anything")
    assert "http://127.0.0.1:9" in str(info.value)


def test_module_only_on_the_users_side_ships_with_the_job(
    client: farside.Gateway, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "my_analysis_code"
    package.mkdir()
    (package / "cuts.py").write_text(
        "THRESHOLD = 25\n\ndef passes(pt):\n    return pt > THRESHOLD\n"
    )
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_analysis_code import cuts  # importable here only: the pilot has no such path

    def select(pts: list[float]) -> list[float]:
        return [pt for pt in pts if cuts.passes(pt)]

    assert client.submit(select, [10.0, 30.0, 50.0]).result(timeout=30) == [30.0, 50.0]


def test_results_are_streamed_past_the_request_limit_up_to_the_result_limit(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw: GatewayProcess = make_gateway(max_request_size=1024 * 1024, max_result_size=8_000_000)
    client = gw.client()

    @farside.task(gateway=client)
    def sized(n: int) -> bytes:
        return b"x" * n

    @farside.task(gateway=client)
    def fine() -> str:
        return "still here"

    # over the request limit, under the result limit: uploaded in a stream, served likewise
    assert sized.submit(3_000_000).result(timeout=60) == b"x" * 3_000_000
    with pytest.raises(farside.JobFailed, match="over its limit of 8000000 bytes") as info:
        sized.submit(9_000_000).result(timeout=60)
    assert "max_result_size" in str(info.value)
    job = client.jobs(limit=1)[0]
    assert (job.attempts, job.error_class) == (1, "user")
    assert fine.submit().result(timeout=30) == "still here"
    # the pilot that sent the oversized result is still up (the other warm pilot may still
    # be starting, so "every live pilot is running" would be a race)
    (attempt,) = client.job(job.id).attempt_list
    assert attempt.pilot_id is not None
    assert {p.id: p.state for p in client.pilots()}.get(attempt.pilot_id) == "running"
    # nothing of the refused upload is left in the blob store
    blobs = [p.name for p in (gw.state_dir / "blobs").rglob("*") if p.is_file()]
    assert not [name for name in blobs if name.endswith(".partial")]
    client.close()


def test_functions_defined_in_main_like_a_notebook_cell(gateway: GatewayProcess, tmp_path) -> None:
    """A kernel runs cells in ``__main__``; so does a script: its functions travel by value."""
    script = tmp_path / "analysis.py"
    script.write_text(
        "import farside\n"
        "gw = farside.Gateway()\n"
        "scale = 3\n"
        "def calibrate(x):\n"
        "    return x * scale\n"
        "@farside.task(memory='100 MB')\n"
        "def run(values):\n"
        "    print('calibrating', len(values))\n"
        "    return [calibrate(v) for v in values]\n"
        "fut = run.submit([1, 2, 3])\n"
        "print(fut.result(timeout=60))\n"
        "print(gw.logs(fut.job_id))\n"
    )
    env = {
        **os.environ,
        "FARSIDE_GATEWAY_URL": gateway.url,
        "FARSIDE_TOKEN": gateway.user_token,
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[3, 6, 9]", "['calibrating 3']"]


def test_after_runs_a_task_once_its_parents_finished(client: farside.Gateway, tmp_path) -> None:
    flag = tmp_path / "parent-done"
    gate = tmp_path / "gate"

    @farside.task(gateway=client)
    def parent() -> str:
        # held at a gate the test opens: a fixed sleep could end before the check below
        while not gate.exists():
            time.sleep(0.05)
        time.sleep(0.5)
        flag.write_text("yes")
        return "parent"

    @farside.task(gateway=client)
    def child() -> str:
        return "child saw " + flag.read_text()

    first = parent.submit()
    second = child.options(after=[first]).submit()
    assert client.job(second.job_id).state == "pending"
    gate.touch()
    assert second.result(timeout=60) == "child saw yes"
    assert client.job(second.job_id).after == [first.job_id]

    @farside.task(gateway=client)
    def broken() -> None:
        raise RuntimeError("no luck")

    doomed = child.options(after=[broken.submit()]).submit()
    with pytest.raises(farside.JobFailed, match="dependency job"):
        doomed.result(timeout=60)
