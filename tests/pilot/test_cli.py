"""The command line entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from farside_pilot.cli import main


def test_missing_configuration_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARSIDE_GATEWAY_URL", raising=False)
    assert main(["--token", "t"]) == 2
    assert "FARSIDE_GATEWAY_URL" in capsys.readouterr().err


def test_python_dash_m_refuses_an_unreachable_gateway(tmp_path: object) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "farside_pilot",
            "--gateway-url",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--gateway-grace",
            "0.5",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "cannot reach the farside gateway" in result.stderr
