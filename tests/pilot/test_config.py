"""Configuration from FARSIDE_* variables and flags."""

from __future__ import annotations

import pytest

from farside_pilot.config import load_config
from farside_protocol import ConfigurationError

ENV = {
    "FARSIDE_GATEWAY_URL": "http://gw:8765/",
    "FARSIDE_PILOT_TOKEN": "site-token",
    "FARSIDE_SITE": "hpc",
    "FARSIDE_PILOT_CORES": "8",
    "FARSIDE_PILOT_MEMORY": "16 GiB",
    "FARSIDE_PILOT_WALLTIME": "2h",
    "FARSIDE_PILOT_IDLE_TIMEOUT": "60",
    "FARSIDE_PILOT_ID": "12",
    "FARSIDE_PILOT_PREFETCH": "32",
}


def test_environment() -> None:
    config = load_config([], ENV)
    assert config.gateway_url == "http://gw:8765"
    assert config.token == "site-token"
    assert config.site == "hpc"
    assert (config.cores, config.memory, config.gpus) == (8, 16 * 1024**3, 0)
    assert config.walltime == 7200
    assert config.idle_timeout == 60
    assert config.pilot_id == 12
    assert config.prefetch == 32


def test_flags_win() -> None:
    config = load_config(["--cores", "2", "--memory", "1GiB", "--site", "laptop"], ENV)
    assert (config.cores, config.memory, config.site) == (2, 1024**3, "laptop")


def test_defaults() -> None:
    config = load_config(["--gateway-url", "http://x", "--token", "t"], {})
    assert config.cores >= 1
    assert config.memory > 0
    assert config.walltime is None
    assert config.site == "local"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FARSIDE_PILOT_TOKEN": "t"}, "FARSIDE_GATEWAY_URL"),
        ({"FARSIDE_GATEWAY_URL": "http://x"}, "FARSIDE_PILOT_TOKEN"),
        ({**ENV, "FARSIDE_PILOT_MEMORY": "lots"}, "cannot parse memory"),
        ({**ENV, "FARSIDE_PILOT_CORES": "0"}, "at least one core"),
    ],
)
def test_bad_configuration(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config([], env)
