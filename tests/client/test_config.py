"""Where the client finds the gateway: explicit > environment > client.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farside import ConfigurationError, resolve_config


def write_client_file(config: Path, url: str, token_file: str, token: str | None) -> None:
    config.mkdir(parents=True, exist_ok=True)
    (config / "client.json").write_text(json.dumps({"url": url, "token_file": token_file}))
    if token is not None:
        path = Path(token_file) if Path(token_file).is_absolute() else config / token_file
        path.write_text(token + "\n")
        path.chmod(0o600)


def test_missing_everything_says_what_to_do(isolated_config: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_config()
    message = str(info.value)
    assert "farside up" in message
    assert "FARSIDE_GATEWAY_URL" in message
    assert "FARSIDE_TOKEN" in message
    assert str(isolated_config / "client.json") in message


def test_file_is_used_last(isolated_config: Path) -> None:
    write_client_file(isolated_config, "http://127.0.0.1:9999/", "user.token", "filetok")
    config = resolve_config()
    assert (config.url, config.token) == ("http://127.0.0.1:9999", "filetok")
    assert config.token_source == str(isolated_config / "user.token")


def test_environment_beats_file(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_client_file(isolated_config, "http://file:1", "user.token", "filetok")
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", "http://env:2")
    assert resolve_config().url == "http://env:2"
    assert resolve_config().token == "filetok"  # each value resolves on its own
    monkeypatch.setenv("FARSIDE_TOKEN", "envtok")
    assert resolve_config().token == "envtok"


def test_explicit_beats_environment(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", "http://env:2")
    monkeypatch.setenv("FARSIDE_TOKEN", "envtok")
    config = resolve_config("http://arg:3", "argtok")
    assert (config.url, config.token) == ("http://arg:3", "argtok")


def test_absolute_token_file(isolated_config: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "elsewhere.token"
    write_client_file(isolated_config, "http://file:1", str(token_file), "abs")
    assert resolve_config().token == "abs"


def test_unreadable_token_file_names_it(isolated_config: Path) -> None:
    write_client_file(isolated_config, "http://file:1", "missing.token", None)
    with pytest.raises(ConfigurationError, match=r"missing\.token"):
        resolve_config()


def test_url_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", "http://env:2")
    with pytest.raises(ConfigurationError, match="no token"):
        resolve_config()


def test_broken_client_file(isolated_config: Path) -> None:
    isolated_config.mkdir()
    (isolated_config / "client.json").write_text("{nope")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        resolve_config()


def test_the_token_stays_out_of_reprs(isolated_config: Path) -> None:
    config = resolve_config(url="http://arg:3", token="argtok-secret")
    assert "argtok-secret" not in repr(config)
    assert "argtok-secret" not in str(config)
    assert "<hidden>" in repr(config)
    assert config.token == "argtok-secret"  # still there for whoever needs it


def test_dask_configuration_gives_the_address_after_the_environment(
    isolated_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    write_client_file(isolated_config, "http://file:1", "user.token", "filetok")
    with dask.config.set({"farside.address": "http://from-dask:8765/"}):
        config = resolve_config()
        assert config.url == "http://from-dask:8765"
        assert "farside.address" in config.url_source
        monkeypatch.setenv("FARSIDE_GATEWAY_URL", "http://env:2")
        assert resolve_config().url == "http://env:2"
        assert resolve_config(url="http://arg:3").url == "http://arg:3"


def test_shipped_dask_defaults_are_registered() -> None:
    import dask

    from farside._dask_config import cluster_setting, setting

    assert setting("cluster.cores") == 1
    assert setting("cluster.workers") == 0
    assert setting("address") is None
    assert setting("offload") == {}
    with dask.config.set({"farside.cluster.memory": "4 GiB"}):
        assert cluster_setting("memory", None) == "4 GiB"
        assert cluster_setting("memory", "1 GiB") == "1 GiB"  # an argument wins
