"""The client against the real local platform (`farside up`): a gateway with local pilots."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import farside

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Platform:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.env = {**os.environ, "FARSIDE_CONFIG_DIR": str(root / "config")}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        client_json = self.root / "config" / "client.json"
        client_json.unlink(missing_ok=True)
        command = [sys.executable, "-m", "farside", "up", "--port", str(self.port)]
        command += ["--state-dir", str(self.root / "state")]
        with (self.root / "up.log").open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not client_json.exists():
            assert self.process.poll() is None, (self.root / "up.log").read_text()
            assert time.monotonic() < deadline, "farside up did not write client.json"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    p = Platform(tmp_path)
    monkeypatch.setenv("FARSIDE_CONFIG_DIR", p.env["FARSIDE_CONFIG_DIR"])
    p.start()
    yield p
    p.stop()
    stray_pilots(tmp_path)


def stray_pilots(root: Path) -> None:
    """End pilots of this platform that outlived it (a pilot submitted while it stopped)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            workdir = proc.environ().get("FARSIDE_PILOT_WORKDIR", "")
        except (psutil.Error, OSError):
            continue
        if workdir.startswith(str(root)):
            proc.terminate()


@farside.task(cores=1, memory="128 MiB", walltime="10m")
def square(x: int) -> int:
    print("squaring", x)
    return x * x


def test_round_trip_on_the_local_platform(platform: Platform) -> None:
    config = json.loads((platform.root / "config" / "client.json").read_text())
    with farside.Gateway() as gw:
        assert gw.url == config["url"].rstrip("/")
        fut = square.submit(3)
        assert fut.result(timeout=60) == 9
        assert list(gw.logs(fut.job_id, follow=True)) == ["squaring 3"]
        assert list(square.map(range(50))) == [x * x for x in range(50)]
        assert gw.job(fut.job_id).state is farside.JobState.FINISHED


def test_futures_survive_a_gateway_restart(platform: Platform) -> None:
    """The local gateway drains running jobs before it stops; the stream then reconnects.

    Replay of events missed while disconnected (Last-Event-ID) is tested against the fake
    gateway in test_gateway.py, where the timing is under the test's control.
    """

    @farside.task(walltime="10m")
    def nap(x: int) -> int:
        time.sleep(3)
        return x

    with farside.Gateway() as gw:
        futures = [nap.submit(i) for i in range(2)]
        time.sleep(0.5)
        platform.stop()
        platform.start()
        assert [f.result(timeout=120) for f in futures] == [0, 1]
        deadline = time.monotonic() + 30
        while gw._listener.connections < 2:  # the event stream reopened on the new gateway
            assert time.monotonic() < deadline, "the event stream did not reconnect"
            time.sleep(0.1)
        assert square.submit(7).result(timeout=60) == 49
