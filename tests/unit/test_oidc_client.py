"""Where ``farside login``'s token fits in the client's token resolution (no provider)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from farside import ConfigurationError, resolve_config
from farside._config import config_dir
from farside._paths import token_file
from farside._tokens import write_private as _write_private


def _logged_in(gateway_url: str | None = "http://gw:8765", **fields: Any) -> None:
    record = {
        "issuer": "http://127.0.0.1:9090",
        "client_id": "farside-cli",
        "token_endpoint": "http://127.0.0.1:9/token",  # nothing listens: no refresh expected
        "gateway_url": gateway_url,
        "access_token": "eyJ.oidc.token",
        "refresh_token": None,
        "expires_at": time.time() + 3600,
        **fields,
    }
    _write_private(token_file(), record)


def test_the_login_gives_gateway_and_token_when_nothing_else_does() -> None:
    _logged_in()
    config = resolve_config()
    assert (config.url, config.token) == ("http://gw:8765", "eyJ.oidc.token")
    assert config.token_source == str(token_file())
    assert stat.S_IMODE(token_file().stat().st_mode) == 0o600


def test_explicit_and_local_tokens_win(monkeypatch: pytest.MonkeyPatch) -> None:
    _logged_in()
    assert resolve_config(url="http://gw:8765", token="fsu_arg").token == "fsu_arg"
    monkeypatch.setenv("FARSIDE_TOKEN", "fsu_env")
    assert resolve_config(url="http://gw:8765").token == "fsu_env"
    monkeypatch.delenv("FARSIDE_TOKEN")
    (config_dir() / "client.json").write_text(
        json.dumps({"url": "http://gw:8765", "token": "fsu_local"})
    )
    assert resolve_config().token == "fsu_local"


def test_a_login_is_used_only_for_its_gateway() -> None:
    _logged_in("http://gw:8765")
    with pytest.raises(ConfigurationError, match="Run `farside login`"):
        resolve_config(url="http://elsewhere:8765")
    _logged_in(None)  # `farside login --issuer`: for whichever gateway is configured
    assert resolve_config(url="http://elsewhere:8765").token == "eyJ.oidc.token"


def test_an_expired_login_without_refresh_token_says_what_to_do() -> None:
    _logged_in(expires_at=time.time() - 1)
    with pytest.raises(ConfigurationError, match="has expired; run `farside login` again"):
        resolve_config()


def test_the_token_file_is_private_even_when_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{}")
    path.chmod(0o644)
    _write_private(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"a": 1}
