"""`farside up`: the local platform on its embedded defaults, as a user starts it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import farside
from support.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FARSIDE_CONFIG_DIR": str(tmp_path / "config")}


def _up(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "farside",
        "up",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        *extra,
    ]


def test_up_runs_the_example_and_stops(tmp_path: Path) -> None:
    done = subprocess.run(
        _up(tmp_path, "--example", "--once"),
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "farside is up at http://127.0.0.1:" in done.stdout
    assert "square(3) on a pilot = 9" in done.stdout
    assert "squaring 3" in done.stdout  # the live log of the job
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in done.stdout
    config = tmp_path / "config"
    for name in ("user.token", "pilot.token"):
        assert stat.S_IMODE((config / name).stat().st_mode) == 0o600
    client_json = json.loads((config / "client.json").read_text())
    assert client_json["token_file"] == str(config / "user.token")


def test_up_serves_until_ctrl_c_and_takes_its_pilots_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FARSIDE_CONFIG_DIR", str(tmp_path / "config"))
    with (tmp_path / "up.log").open("wb") as log:
        proc = subprocess.Popen(
            _up(tmp_path), env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: (tmp_path / "config" / "client.json").exists(), timeout=60)
        with farside.Gateway() as gw:  # no arguments: found through client.json

            @farside.task(gateway=gw)
            def hello(who: str) -> str:
                return f"hello {who}"

            assert hello.submit("world").result(timeout=60) == "hello world"
            pids = [int(p.batch_id) for p in gw.pilots() if p.batch_id]
        assert pids
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
