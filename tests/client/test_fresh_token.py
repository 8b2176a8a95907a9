"""Which tokens a hub server renews through the hub, and how often it asks."""

from __future__ import annotations

import base64
import json
import time

import pytest

from farside import _tokens as _profile


def _jwt(exp: float) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def answer(environ: object = None) -> str:
        asked.append("asked")
        return f"from-hub-{len(asked)}"

    monkeypatch.setattr(_profile, "hub_access_token", answer)
    monkeypatch.setattr(_profile, "_opaque_seen", {})
    return asked


def test_a_jwt_is_renewed_only_near_its_expiry(hub: list[str]) -> None:
    fresh = _jwt(time.time() + 3600)
    assert _profile.hub_renewed(fresh) == fresh
    assert _profile.hub_renewed(_jwt(time.time() + 10)) == "from-hub-1"


def test_an_opaque_token_is_checked_with_the_hub_once_a_minute(
    hub: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _profile.hub_renewed("opaque-1") == "from-hub-1"
    assert _profile.hub_renewed("opaque-1") == "from-hub-1"  # cached: no second question
    assert hub == ["asked"]
    later = time.monotonic() + _profile.OPAQUE_RECHECK + 1
    monkeypatch.setattr(_profile.time, "monotonic", lambda: later)
    assert _profile.hub_renewed("opaque-1") == "from-hub-2"


def test_farside_tokens_are_never_swapped(hub: list[str]) -> None:
    assert _profile.hub_renewed("fsu_abc") == "fsu_abc"
    assert hub == []
