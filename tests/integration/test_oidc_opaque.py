"""Opaque OIDC access tokens (as INDIGO IAM may issue) at a real gateway: checked by token
introspection (RFC 7662) at the real test provider (``scripts/oidc.sh``), which issues them
to its ``farside-opaque`` clients through the device authorization grant."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from support.authz import introspection_settings, job, oidc_settings
from support.harness import GatewayProcess
from support.oidc import (
    CLIENT,
    GATEWAY_CLIENT,
    OPAQUE_CLIENT,
    OPAQUE_SHORT_CLIENT,
    OTHER_CLIENT,
    access_token,
    device_tokens,
    revoke,
)

pytestmark = pytest.mark.integration


def introspecting(issuer: str, secret: str = GATEWAY_CLIENT[1]) -> dict[str, Any]:
    """The ``[oidc]`` table of a gateway that also checks opaque tokens at ``issuer``."""
    return oidc_settings(issuer) | introspection_settings(secret)


def _gateway(path: Path, oidc: dict[str, Any]) -> GatewayProcess:
    return GatewayProcess(
        path,
        sites=[{"name": "local", "min_warm": 0, "max_pilots": 0}],
        fair_share={"groups": {"analysts": 2}},
        oidc=oidc,
    )


@pytest.fixture
def gateway(tmp_path: Path, oidc_issuer: str) -> Iterator[GatewayProcess]:
    gw = _gateway(tmp_path / "gateway", introspecting(oidc_issuer))
    try:
        yield gw.start()
    finally:
        gw.cleanup()


def _message(response: httpx.Response) -> str:
    assert response.status_code == 401, (response.status_code, response.text)
    message: str = response.json()["error"]["message"]
    return message


def test_opaque_tokens_map_to_the_same_users_as_jwts(
    gateway: GatewayProcess, oidc_issuer: str
) -> None:
    alice = access_token(oidc_issuer, "alice", OPAQUE_CLIENT)
    assert alice.count(".") == 0  # really opaque: nothing for the gateway to read in it
    alice_jwt = access_token(oidc_issuer, "alice", CLIENT)
    admin = access_token(oidc_issuer, "admin", OPAQUE_CLIENT)
    with gateway.http(alice) as a, gateway.http(alice_jwt) as a_jwt, gateway.http(admin) as root:
        me = a.get("/whoami").json()
        assert me == {
            "name": "alice",
            "kind": "user",
            "pilot_id": None,
            "groups": ["analysts", "atlas"],
            "workflow_id": None,  # a token of a workflow's body names its run
        }
        assert root.get("/whoami").json()["kind"] == "admin"
        (job_id,) = a.post("/jobs", json={"jobs": [job(name="opaque")]}).json()["job_ids"]
        # the same alice, whichever kind of token she brings
        assert a_jwt.get(f"/jobs/{job_id}").json()["owner"] == "alice"


def test_a_revoked_or_made_up_opaque_token_is_refused(
    gateway: GatewayProcess, oidc_issuer: str
) -> None:
    tokens = device_tokens(oidc_issuer, "bob", OPAQUE_CLIENT)
    revoke(oidc_issuer, tokens["access_token"], OPAQUE_CLIENT)
    for token in (tokens["access_token"], "made-up-opaque-token-0123456789"):
        with gateway.http(token) as http:
            message = _message(http.get("/whoami"))
        assert f"the access token is not active at {oidc_issuer}" in message
        assert "run `farside login`" in message
    # a refresh token is active too, but it is no access token for this gateway (another
    # login's: revoking an access token at this provider revokes its whole grant)
    refresh = device_tokens(oidc_issuer, "bob", OPAQUE_CLIENT)["refresh_token"]
    with gateway.http(refresh) as http:
        assert "not this gateway (farside)" in _message(http.get("/whoami"))


def test_opaque_tokens_for_another_audience_are_refused(tmp_path: Path, oidc_issuer: str) -> None:
    """other-app's tokens are JWTs for audience 'other'; a gateway whose audience is 'other'
    refuses farside's opaque tokens the same way."""
    gw = _gateway(tmp_path / "gw", {**introspecting(oidc_issuer), "audience": ["other"]})
    try:
        gw.start()
        with gw.http(access_token(oidc_issuer, "alice", OPAQUE_CLIENT)) as http:
            message = _message(http.get("/whoami"))
        assert "the token is for audience 'farside', not this gateway (other)" in message
        with gw.http(access_token(oidc_issuer, "alice", OTHER_CLIENT)) as http:
            assert http.get("/whoami").json()["name"] == "alice"  # JWTs still work
    finally:
        gw.cleanup()


def test_a_remembered_opaque_token_still_ends_at_its_expiry(
    gateway: GatewayProcess, oidc_issuer: str
) -> None:
    token = access_token(oidc_issuer, "alice", OPAQUE_SHORT_CLIENT)
    issued = time.time()
    with gateway.http(token) as http:
        assert http.get("/whoami").status_code == 200  # introspected and remembered
        while time.time() < issued + 4.5:  # the provider's 3 s, and its clock's second
            time.sleep(0.2)
        message = _message(http.get("/whoami"))
    assert "not active" in message or "token expired" in message, message


def test_a_wrong_client_secret_is_the_operators_problem(tmp_path: Path, oidc_issuer: str) -> None:
    gw = _gateway(tmp_path / "gw", introspecting(oidc_issuer, secret="not-the-secret"))
    try:
        gw.start()
        with gw.http(access_token(oidc_issuer, "alice", OPAQUE_CLIENT)) as http:
            message = _message(http.get("/whoami"))
        assert "cannot check the token at its OIDC issuer" in message
        assert "operator finds details in the gateway log" in message
        log = gw.log_path.read_text()
        assert "refused the gateway's client 'farside-gateway'" in log
        assert "not-the-secret" not in log
    finally:
        gw.cleanup()


def test_introspection_without_a_client_secret_stops_the_gateway_at_start(
    tmp_path: Path, oidc_issuer: str
) -> None:
    oidc = introspecting(oidc_issuer)
    del oidc["introspection_client_secret"]
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps({"oidc": oidc}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "farside_gateway",
            "--config",
            str(config),
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "set oidc.introspection_client_id and oidc.introspection_client_secret" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
