"""Workflow runs on a real gateway with local pilots: the body runs in the pool, its calls
are journalled, and a body that runs again (pilot killed, pause and resume, retry) gets
its finished calls back instead of evaluating them again."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import farside
from farside_protocol.workflows import WorkflowState
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _evaluations(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _make_loop(client: farside.Gateway, log: Path, pause: float) -> Any:
    """A three-iteration 'optimiser': each iteration maps over points derived from the
    last iteration's best score, and each evaluation appends its point to ``log``."""

    @farside.task(gateway=client)
    def evaluate(x: float, y: float) -> float:
        with open(log, "a") as out:  # every evaluation leaves a trace, replayed ones too
            out.write(f"{x:.3f},{y:.3f}\n")
        time.sleep(pause)
        return (x - 1.0) ** 2 + (y + 0.5) ** 2

    @farside.workflow(gateway=client, max_walltime="10 minutes")
    def optimise(n_iter: int, batch: int) -> dict[str, float]:
        best = (0.0, 0.0, float("inf"))
        for i in range(n_iter):
            points = [
                {"x": best[0] + 0.1 * (k - batch // 2), "y": best[1] - 0.1 * i}
                for k in range(batch)
            ]
            scores = evaluate.map(kwargs=points)
            for point, score in zip(points, scores, strict=True):
                if score < best[2]:
                    best = (point["x"], point["y"], score)
            farside.report(iteration=i + 1, best=best[2])
        return {"x": best[0], "y": best[1], "score": best[2]}

    return optimise


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cli(gateway: GatewayProcess, *argv: str) -> int:
    from farside._cli import main

    return main([*argv, "--url", gateway.url, "--token", gateway.user_token])


def test_a_workflow_runs_in_the_pool_and_reports(
    gateway: GatewayProcess,
    client: farside.Gateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    optimise = _make_loop(client, tmp_path / "evaluated", pause=0.0)
    expected = optimise.fn(2, 4)  # the plain function, here: the same answer
    (tmp_path / "evaluated").unlink()
    run = optimise.submit(2, 4)
    assert run.result(timeout=120) == expected
    info = run.progress()
    assert info.state is WorkflowState.FINISHED
    assert info.children == {"finished": 8}
    assert info.report == {"iteration": 2, "best": expected["score"]}
    assert len(_evaluations(tmp_path / "evaluated")) == 8
    # any kernel reconnects by name or id
    again = client.workflow("optimise")
    assert again.id == run.id
    assert again.result(timeout=10) == expected
    assert [w.id for w in client.workflows()] == [run.id]
    body = client.job(info.body_job_id)
    assert body.kind == "workflow"
    # and so does a shell
    capsys.readouterr()
    assert _cli(gateway, "workflows", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"], listed["children"]) == (
        run.id,
        "finished",
        info.children,
    )
    assert _cli(gateway, "workflow", "optimise") == 0
    shown = capsys.readouterr().out
    assert "calls done: 8/8" in shown
    assert f"best: {expected['score']}" in shown


def test_a_body_whose_pilot_is_killed_evaluates_nothing_twice(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "evaluated"
    optimise = _make_loop(client, log, pause=0.5)
    expected = optimise.fn(3, 4)
    log.unlink()
    run = optimise.submit(3, 4)
    # mid-loop: the first iteration's points are in, the body waits on the second
    wait_until(lambda: len(_evaluations(log)) >= 5, timeout=90)
    body = client.job(run.progress().body_job_id)
    pilot = next(p for p in client.pilots() if p.id == body.pilot_id)
    assert pilot.batch_id is not None
    os.kill(int(pilot.batch_id), signal.SIGKILL)
    assert run.result(timeout=180) == expected
    evaluated = _evaluations(log)
    assert len(evaluated) == 12, evaluated  # 3 iterations of 4 points, each once
    info = run.progress()
    assert info.attempts == 2  # the body ran again, on another pilot
    assert info.children == {"finished": 12}
    first = client.job(info.body_job_id).attempt_list[0]
    assert first.error_class == "system"


def test_pause_resume_and_the_old_token(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "evaluated"
    optimise = _make_loop(client, log, pause=0.5)
    expected = optimise.fn(2, 3)
    log.unlink()
    run = optimise.submit(2, 3)
    wait_until(lambda: run.progress().state is WorkflowState.RUNNING, timeout=60)
    first_body = run.progress().body_job_id
    paused = run.pause()
    assert paused.state is WorkflowState.PAUSED
    assert client.job(first_body).state == "cancelled"
    with pytest.raises(TimeoutError):
        run.result(timeout=1)  # a paused run is waited for, not failed
    resumed = run.resume()
    assert resumed.body_job_id != first_body
    assert resumed.body_runs == 2
    assert run.result(timeout=120) == expected
    assert len(_evaluations(log)) == 6


def test_kill_cancels_children_and_retry_reuses_finished_calls(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    gate = tmp_path / "open"

    @farside.task(gateway=client)
    def step(i: int) -> int:
        if i >= 2:
            (tmp_path / f"worker-{i}").write_text(str(os.getpid()))
        while i >= 2 and not gate.exists():  # the later calls wait for the gate
            time.sleep(0.1)
        with open(tmp_path / "evaluated", "a") as out:
            out.write(f"{i}\n")
        return i * 10

    @farside.workflow(gateway=client, max_walltime="10 minutes")
    def chain() -> int:
        total = 0
        for i in range(4):
            total += step.submit(i).result()
        return total

    run = chain.submit()
    # steps 0 and 1 done, step 2 waits at the gate
    at_gate = tmp_path / "worker-2"
    wait_until(
        lambda: run.progress().children == {"finished": 2, "running": 1} and at_gate.exists(),
        timeout=60,
    )
    assert _cli(gateway, "workflow", str(run.id), "kill") == 0  # as from a shell
    killed = run.progress()
    assert killed.state is WorkflowState.CANCELLED
    assert killed.children == {"finished": 2, "cancelled": 1}
    with pytest.raises(farside.WorkflowCancelled):
        run.result(timeout=10)
    # the cancelled step's pilot kills its worker when its heartbeat hears of it; opened
    # before that, the gate would let the cancelled call finish too
    cancelled_worker = int(at_gate.read_text())
    wait_until(lambda: not _running(cancelled_worker), timeout=30)
    gate.touch()
    run.retry()
    assert run.result(timeout=120) == 60
    # steps 0 and 1 once (journalled), step 2 again after its cancellation, step 3 once
    assert sorted(_evaluations(tmp_path / "evaluated")) == ["0", "1", "2", "3"]
    assert run.progress().children == {"finished": 4, "cancelled": 1}


def test_a_failing_body_raises_its_error(client: farside.Gateway) -> None:
    @farside.workflow(gateway=client)
    def broken() -> None:
        raise ValueError("no convergence after 0 iterations")

    run = broken.submit()
    with pytest.raises(ValueError, match="no convergence"):
        run.result(timeout=60)
    assert run.progress().state is WorkflowState.FAILED
    assert "no convergence" in (run.progress().error or "")


def test_the_body_token_is_scoped_and_dies_with_its_attempt(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.workflow(gateway=client)
    def leak() -> str:
        import os as inner_os

        return inner_os.environ["FARSIDE_TOKEN"]

    run = leak.submit()
    token = run.result(timeout=60)
    assert token.startswith("fsu_")
    # the attempt has ended: the token is dead
    response = httpx.get(f"{gateway.url}/api/v1/jobs", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_body_token_cannot_leave_its_scope(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    @farside.workflow(gateway=client)
    def probe() -> dict[str, int]:
        import httpx as inner_httpx

        url = inner_os_env("FARSIDE_GATEWAY_URL")
        headers = {"authorization": f"Bearer {inner_os_env('FARSIDE_TOKEN')}"}
        codes = {}
        for method, path in [
            ("GET", "/jobs"),
            ("GET", "/clusters"),
            ("POST", "/workflows/999/pause"),
            ("GET", "/pilots"),
        ]:
            codes[f"{method} {path}"] = inner_httpx.request(
                method, f"{url}/api/v1{path}", headers=headers
            ).status_code
        return codes

    def inner_os_env(name: str) -> str:
        import os as inner_os

        return inner_os.environ[name]

    codes = probe.submit().result(timeout=60)
    assert codes == {
        "GET /jobs": 200,
        "GET /clusters": 403,
        "POST /workflows/999/pause": 403,
        "GET /pilots": 403,
    }


def test_journal_keys_are_only_for_workflow_bodies(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    from farside_protocol.payload import encode_call

    payload = encode_call(b"x", (), {})
    spec = {"payload": __import__("base64").b64encode(payload).decode(), "journal_key": "0:ab"}
    with gateway.http(gateway.user_token) as http:
        response = http.post("/jobs", json={"jobs": [spec]})
    assert response.status_code == 422, response.text
    assert "workflow" in response.text
