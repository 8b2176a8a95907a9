"""The farside command: tables, detail, logs, cancel, errors, help, delegation."""

from __future__ import annotations

import concurrent.futures
import json
import sys
import types

import pytest

import farside
from farside._cli import main
from support.fake_gateway import USER_TOKEN, FakeGateway


@pytest.fixture
def env(fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", fake_gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", USER_TOKEN)
    return fake_gateway


@farside.task(walltime="5m")
def shout(word: str) -> str:
    print(word.upper())
    if word == "bad":
        raise RuntimeError("bad word")
    return word.upper()


def run_jobs(fake_gateway: FakeGateway, words: list[str]) -> list[int]:
    with farside.Gateway(fake_gateway.url, USER_TOKEN, set_as_default=False) as gw:
        futures = shout.options(gateway=gw).map(words).futures
        if fake_gateway.auto_run:
            concurrent.futures.wait(futures, timeout=10)
        return [f.job_id for f in futures]


def test_jobs_table(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    ids = run_jobs(env, ["hi", "bad"])
    assert main(["jobs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "kind",
        "state",
        "site",
        "attempts",
        "created",
        "ended",
        "error",
        "/",
        "note",
    ]
    assert [line.split()[0] for line in lines[1:]] == [str(i) for i in sorted(ids, reverse=True)]
    # the column names kinds as the filter does
    assert [line.split()[2] for line in lines[1:]] == ["function", "function"]
    assert main(["jobs", "--kind", "function"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["jobs", "--kind", "dask-worker"]) == 0
    assert capsys.readouterr().out.strip() == "no jobs"
    assert main(["jobs", "--state", "failed"]) == 0
    out = capsys.readouterr().out
    assert str(ids[1]) in out
    assert str(ids[0]) not in out.split("\n", 1)[1]


def test_listings_as_json_and_whole_cells_when_piped(
    env: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = run_jobs(env, ["hi", "bad"])
    assert main(["jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(j["id"] for j in listed) == sorted(ids)
    assert {j["kind"] for j in listed} == {"function"}
    assert main(["job", str(ids[1]), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["id"] == ids[1]
    assert "history" in detail
    # captured output is not a terminal: a long error is printed whole, not cut at 40
    assert main(["jobs"]) == 0
    failed = next(line for line in capsys.readouterr().out.splitlines() if "RuntimeError" in line)
    assert "…" not in failed
    assert "bad word" in failed


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"farside {farside.__version__}"
    assert farside.__version__[0].isdigit()


def test_job_detail(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    (job_id,) = run_jobs(env, ["hi"])
    assert main(["job", str(job_id)]) == 0
    out = capsys.readouterr().out
    assert f"id:          {job_id}" in out
    assert "walltime 0:05:00" in out
    assert "history:" in out
    assert "running" in out
    assert "finished" in out


def test_logs(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    (job_id,) = run_jobs(env, ["hello"])
    assert main(["logs", str(job_id)]) == 0
    assert capsys.readouterr().out == "HELLO\n"
    assert main(["logs", "-f", str(job_id)]) == 0
    assert capsys.readouterr().out == "HELLO\n"


def test_cancel_and_whoami(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    env.auto_run = False
    ids = run_jobs(env, ["a", "b"])
    assert main(["cancel", *map(str, ids)]) == 0
    assert capsys.readouterr().out.strip() == "cancelled: " + " ".join(map(str, ids))
    assert main(["cancel", str(ids[0])]) == 0
    assert "nothing cancelled" in capsys.readouterr().out
    assert main(["whoami"]) == 0
    assert capsys.readouterr().out.strip() == f"alice (user) at {env.url}"


def test_sites_and_pilots(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    env.sites.append(
        {
            "name": "local",
            "kind": "local",
            "status": "online",
            "pilots": {"idle": 2},
            "slot": {"cores": 4, "memory": 8 * 1024**3, "walltime": 3600, "gpus": 0},
            "min_warm": 1,
            "max_pilots": 8,
            "max_queued": 8,
        }
    )
    assert main(["sites"]) == 0
    assert "4c/8 GiB/0g" in capsys.readouterr().out
    assert main(["pilots"]) == 0
    assert capsys.readouterr().out.strip() == "no pilots"


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "farside up" in err
    assert main(["job", "1", "--url", "http://127.0.0.1:9", "--token", "x"]) == 1
    assert "cannot reach the farside gateway at http://127.0.0.1:9" in capsys.readouterr().err


def test_not_found_is_one_line(env: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["job", "424242"]) == 1
    assert capsys.readouterr().err.strip() == "farside job: no job 424242"


@pytest.mark.parametrize(
    "command", [[], ["jobs"], ["job"], ["logs"], ["cancel"], ["whoami"], ["sites"], ["pilots"]]
)
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: farside" in capsys.readouterr().out


def test_delegates_to_gateway_and_pilot(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []
    platform_up = types.ModuleType("farside_platform.up")
    platform_up.up_main = lambda argv: seen.append(("up", argv)) or 0  # type: ignore[attr-defined]
    gateway_cli = types.ModuleType("farside_gateway.cli")
    gateway_cli.gateway_main = lambda argv: seen.append(("gateway", argv)) or 3  # type: ignore[attr-defined]
    pilot_cli = types.ModuleType("farside_pilot.cli")
    pilot_cli.main = lambda argv: seen.append(("pilot", argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "farside_platform.up", platform_up)
    monkeypatch.setitem(sys.modules, "farside_gateway.cli", gateway_cli)
    monkeypatch.setitem(sys.modules, "farside_pilot.cli", pilot_cli)
    assert main(["up", "--port", "0"]) == 0
    assert main(["gateway", "--help"]) == 3
    assert main(["pilot"]) == 0
    assert seen == [("up", ["--port", "0"]), ("gateway", ["--help"]), ("pilot", [])]
    assert "farside_gateway" not in sys.modules or "farside_gateway.cli" in sys.modules
