from __future__ import annotations

from pathlib import Path

import pytest

from farside_gateway.config import load_config
from farside_protocol import ConfigurationError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_are_a_local_site() -> None:
    config = load_config(None)
    assert [s.name for s in config.sites] == ["local"]
    assert config.resolved_database_url.startswith("sqlite:///")


def test_sites_from_toml(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            '[[sites]]\nname = "cpu"\ncores = 4\nmemory = "8 GiB"\nwalltime = "2h"\n'
            "max_pilots = 10\n",
        )
    )
    (site,) = config.sites
    assert (site.cores, site.memory, site.walltime) == (4, 8 * 1024**3, 7200)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("port = 'eighty'", "port"),
        ("colour = 'blue'", "colour: Extra inputs are not permitted"),
        ('[[sites]]\nname = "a"\nmemory = "much"', "sites.0.memory"),
        ('[[sites]]\nname = "a"\nmin_warm = 5\nmax_pilots = 2', "min_warm (5) exceeds"),
        ('[[sites]]\nname = "a"\n[[sites]]\nname = "a"', "repeated: a"),
        ("heartbeat_interval = 10\nheartbeat_timeout = 5", "heartbeat_timeout must be longer"),
        ("port = [", "not valid TOML"),
    ],
)
def test_bad_configuration_says_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=r"gateway\.toml") as info:
        load_config(_write(tmp_path, text))
    assert words in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_file_wins_over_defaults_and_flags_win_over_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'state_dir = "/from/file"\nport = 1234\n')
    config = load_config(path, {"state_dir": "/default", "port": 1}, port=None, host="0.0.0.0")
    assert (str(config.state_dir), config.port, config.host) == ("/from/file", 1234, "0.0.0.0")
    assert str(load_config(None, {"state_dir": "/default"}).state_dir) == "/default"
