"""OIDC access tokens at a real gateway, from a real provider (``scripts/oidc.sh``).

Every token here comes from the device authorization grant, approved by filling in the
provider's HTML forms over HTTP as a user's browser would.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from farside_protocol.payload import dump_function, encode_call
from support.harness import GatewayProcess, wait_until
from support.oidc import (
    OTHER_CLIENT,
    SCOPE,
    SHORT_CLIENT,
    access_token,
    approve_device,
    start_provider,
)

pytestmark = pytest.mark.integration
OTHER_PORT = 9091  # a second provider: another issuer with keys of its own


def _job() -> dict[str, Any]:
    payload = base64.b64encode(encode_call(dump_function(abs), (-1,), {})).decode()
    return {"payload": payload, "resources": {"memory": "100 MB"}}


def _message(response: Any) -> str:
    assert response.status_code == 401, (response.status_code, response.text)
    message: str = response.json()["error"]["message"]
    return message


@pytest.fixture
def gateway(tmp_path: Path, oidc_issuer: str) -> Iterator[GatewayProcess]:
    """A gateway without pilots (jobs stay queued) that accepts the provider's tokens."""
    gw = GatewayProcess(
        tmp_path / "gateway",
        sites=[{"name": "local", "min_warm": 0, "max_pilots": 0}],
        fair_share={"groups": {"analysts": 2}},
        oidc={
            "issuer": oidc_issuer,
            "audience": ["farside"],
            "client_id": "farside-cli",
            "admin_groups": ["farside-admins"],
            "login_scopes": SCOPE.split(),
            "leeway": 0,
            "jwks_min_refresh": 0,
        },
    )
    try:
        yield gw.start()
    finally:
        gw.cleanup()


def test_users_see_their_own_jobs_with_groups_from_the_token(
    gateway: GatewayProcess, oidc_issuer: str
) -> None:
    alice = access_token(oidc_issuer, "alice")
    bob = access_token(oidc_issuer, "bob")
    admin = access_token(oidc_issuer, "admin")
    with gateway.http(alice) as a, gateway.http(bob) as b, gateway.http(admin) as root:
        me = a.get("/whoami").json()
        # alice's token lists atlas first; the group fair share knows comes first
        assert me == {
            "name": "alice",
            "kind": "user",
            "pilot_id": None,
            "groups": ["analysts", "atlas"],
            "workflow_id": None,  # a token of a workflow's body names its run
        }
        assert b.get("/whoami").json()["groups"] == ["cms"]
        assert root.get("/whoami").json()["kind"] == "admin"
        (job_id,) = a.post("/jobs", json={"jobs": [_job()]}).json()["job_ids"]
        assert a.get(f"/jobs/{job_id}").json()["owner"] == "alice"
        assert b.get(f"/jobs/{job_id}").status_code == 404
        assert b.get("/jobs").json()["jobs"] == []
        assert [j["id"] for j in root.get("/jobs").json()["jobs"]] == [job_id]
    # farside's own tokens keep working next to OIDC
    with gateway.http(gateway.user_token) as local:
        assert local.get("/whoami").status_code == 200


def test_the_gateway_says_how_to_log_in(gateway: GatewayProcess, oidc_issuer: str) -> None:
    with gateway.http() as http:
        info = http.get("/auth").json()["oidc"]
    assert info["issuer"] == oidc_issuer
    assert info["client_id"] == "farside-cli"
    assert info["audience"] == ["farside"]


def test_an_expired_token_is_refused(gateway: GatewayProcess, oidc_issuer: str) -> None:
    token = access_token(oidc_issuer, "alice", SHORT_CLIENT)
    with gateway.http(token) as http:
        assert http.get("/whoami").status_code == 200  # cached until exp at most
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        wait_until(lambda: time.time() > exp + 0.5, timeout=30)
        assert "token expired; run `farside login`" in _message(http.get("/whoami"))


def test_tokens_for_another_audience_or_issuer_are_refused(
    gateway: GatewayProcess, oidc_issuer: str
) -> None:
    other_audience = access_token(oidc_issuer, "alice", OTHER_CLIENT)
    other_issuer = start_provider(OTHER_PORT)
    foreign = access_token(other_issuer, "alice")
    with gateway.http(other_audience) as http:
        message = _message(http.get("/whoami"))
    assert "audience 'other', not this gateway (farside)" in message
    with gateway.http(foreign) as http:
        assert f"issued by '{other_issuer}'" in _message(http.get("/whoami"))


def _resigned(token: str, kid: str) -> str:
    """The token's claims and header, signed with a key the issuer never had."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


def test_forged_tokens_are_refused(gateway: GatewayProcess, oidc_issuer: str) -> None:
    genuine = access_token(oidc_issuer, "alice")
    real_kid = jwt.get_unverified_header(genuine)["kid"]
    with gateway.http() as http:

        def call(token: str) -> Any:
            return http.get("/whoami", headers={"Authorization": f"Bearer {token}"})

        assert call(genuine).status_code == 200
        assert "signature does not verify" in _message(call(_resigned(genuine, real_kid)))
        # an unknown key id makes the gateway fetch the issuer's keys again, then refuse
        assert "does not publish" in _message(call(_resigned(genuine, "rotated-away")))
        assert "farside login" in _message(call("not-a-jwt"))
        assert "farside login" in _message(call(genuine[:-4] + "AAAA"))


# ---------------------------------------------------------------- farside login


def _env(config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    return {**env, "FARSIDE_CONFIG_DIR": str(config_dir)}


def _login(gateway: GatewayProcess, config_dir: Path, user: str, *extra: str) -> str:
    """Run `farside login` as a user would, approve in the 'browser'; its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "farside", "login", "--url", gateway.url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(config_dir),
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    assert lines[0].startswith("To log in, open "), lines
    uri = lines[0].split("open ", 1)[1].split()[0]
    approve_device(uri, lines[1].strip(), user)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + out
    return "".join(lines) + out


def _farside(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farside", *args],
        capture_output=True,
        text=True,
        env=_env(config_dir),
        timeout=120,
        check=False,
    )


def test_farside_login_end_to_end(gateway: GatewayProcess, tmp_path: Path) -> None:
    config_dir = tmp_path / "alice-config"
    out = _login(gateway, config_dir, "alice")
    assert f"The gateway at {gateway.url} knows you as alice (groups: analysts, atlas)" in out
    token_file = config_dir / "oidc-token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert json.loads(token_file.read_text())["refresh_token"]
    # nothing else configured: the login names both the gateway and the token
    done = _farside(config_dir, "whoami")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"alice (user) at {gateway.url}"


def test_the_client_refreshes_an_expiring_token(gateway: GatewayProcess, tmp_path: Path) -> None:
    config_dir = tmp_path / "bob-config"
    _login(gateway, config_dir, "bob", "--client-id", SHORT_CLIENT)
    token_file = config_dir / "oidc-token.json"
    first = json.loads(token_file.read_text())
    exp = jwt.decode(first["access_token"], options={"verify_signature": False})["exp"]
    wait_until(lambda: time.time() > exp + 0.5, timeout=30)
    done = _farside(config_dir, "whoami")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("bob (user)")
    second = json.loads(token_file.read_text())
    assert second["access_token"] != first["access_token"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_a_long_session_outlives_its_first_access_token(
    gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Gateway object (a notebook kernel) keeps working after its access token expired:
    each request takes the login cache's token, refreshed when near expiry."""
    config_dir = tmp_path / "bob-kernel"
    _login(gateway, config_dir, "bob", "--client-id", SHORT_CLIENT)
    monkeypatch.setenv("FARSIDE_CONFIG_DIR", str(config_dir))
    import farside

    gw = farside.Gateway()
    try:
        assert gw.whoami().name == "bob"
        first = json.loads((config_dir / "oidc-token.json").read_text())["access_token"]
        exp = jwt.decode(first, options={"verify_signature": False})["exp"]
        wait_until(lambda: time.time() > exp + 0.5, timeout=30)
        assert gw.whoami().name == "bob"  # the same object, a fresh token
        assert json.loads((config_dir / "oidc-token.json").read_text())["access_token"] != first
    finally:
        gw.close()
