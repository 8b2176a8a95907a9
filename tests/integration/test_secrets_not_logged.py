"""No token ever reaches a log: a full run at DEBUG, then every log it produced is searched.

The run: a gateway that trusts the test OIDC provider (JWTs, and opaque tokens by
introspection with a client secret of its own), with local pilots; ``farside login``
(device grant, short-lived access tokens, so the client renews them with the refresh token);
a client that submits, maps, reads logs and cancels with the OIDC token and with a farside
token; a pilot registered with the site token; refused calls with bad tokens. Searched: the
gateway's log and every other log in its state directory (the pilots'), the provider's log,
and everything the client processes printed. Neither any token used nor anything shaped like
a farside token or a JWT may appear.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from farside_protocol import env
from support.authz import (
    bearer,
    expiring_user_token,
    grep_secrets,
    introspection_settings,
    job,
    oidc_settings,
    register_pilot,
    resigned,
    submit,
    wait_past_expiry,
)
from support.harness import GatewayProcess, wait_until
from support.oidc import (
    GATEWAY_CLIENT,
    OPAQUE_CLIENT,
    OTHER_CLIENT,
    SHORT_CLIENT,
    access_token,
    approve_device,
)

pytestmark = pytest.mark.integration
OIDC_DIR = Path(os.environ.get("FARSIDE_OIDC_DIR", "/tmp/farside-oidc"))  # scripts/oidc.sh
#: a farside token (prefix + 32 random bytes, base64url) or a JWT (base64url JSON header)
TOKEN_SHAPES = re.compile(rb"fs[usp]_[A-Za-z0-9_-]{40,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]+")
#: state-directory files that hold tokens or data on purpose, not logs
NOT_LOGS = {"tokens", "blobs", "gateway.toml", "gateway.json"}
EXIT = {"reason": "done"}

CLIENT_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, time
    import farside

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    def shout(x):
        print("job says", x)
        return x * 2

    def nap(seconds):
        time.sleep(seconds)

    for gw in (farside.Gateway(), farside.Gateway(os.environ["GW_URL"],
                                                  token=os.environ["NATIVE"])):
        print("whoami", gw.whoami())
        fut = gw.submit(shout, 21)
        print("result", fut.result(timeout=120))
        print("map", list(gw.map(shout, range(4))))
        print("logs", list(gw.logs(fut.job_id, follow=True)))
        sleeper = gw.submit(nap, 600)
        print("cancelled", gw.cancel([sleeper.job_id]))
        print("jobs", [j.id for j in gw.jobs()])
        gw.close()
    """
)


class DebugGateway(GatewayProcess):
    """The harness's gateway, logging at DEBUG: the strictest test of what it writes."""

    def _cli(self, *extra: str) -> list[str]:
        args = super()._cli(*extra)
        return [*args, "--log-level", "DEBUG"] if "--port" in extra else args


def _client_env(config_dir: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    return {**base, "FARSIDE_CONFIG_DIR": str(config_dir), **extra}


def _login(gw: GatewayProcess, config_dir: Path, out: Path) -> None:
    """`farside login` as alice, with access tokens that live 3 s; its output to ``out``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "farside", "login", "--url", gw.url, "--client-id", SHORT_CLIENT],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_client_env(config_dir),
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    uri = lines[0].split("open ", 1)[1].split()[0]
    approve_device(uri, lines[1].strip(), "alice")
    rest, _ = proc.communicate(timeout=120)
    out.write_text("".join(lines) + rest)
    assert proc.returncode == 0, out.read_text()


def _run_client(args: list[str], config_dir: Path, out: Path, **extra: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_client_env(config_dir, **extra),
    )
    with out.open("a") as log:
        log.write(done.stdout + done.stderr)
    return done.stdout + done.stderr


def _oidc_tokens(config_dir: Path, secrets: dict[str, str]) -> str:
    """Add the login's current access and refresh tokens to ``secrets``; the access token."""
    record: dict[str, Any] = json.loads((config_dir / "oidc-token.json").read_text())
    n = len(secrets)
    secrets[f"oidc access token ({n})"] = record["access_token"]
    if record.get("refresh_token"):
        secrets[f"oidc refresh token ({n})"] = record["refresh_token"]
    return str(record["access_token"])


def _registration_tokens(gw: GatewayProcess) -> dict[str, str]:
    """The one-use tokens the gateway handed its local pilots (in their environment)."""
    found = {}
    for pid in gw.pilot_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            name, _, value = item.decode(errors="replace").partition("=")
            if name == env.PILOT_TOKEN:
                found[f"registration token of pilot process {pid}"] = value
    return found


def _logs(gw: GatewayProcess, issuer_port: int, client_outputs: list[Path]) -> list[Path]:
    files = [gw.log_path, *client_outputs]
    for path in sorted(gw.state_dir.rglob("*")):
        top = path.relative_to(gw.state_dir).parts[0]
        if path.is_file() and top not in NOT_LOGS and not path.name.startswith("farside.db"):
            files.append(path)
    provider_log = OIDC_DIR / f"port-{issuer_port}" / "provider.log"
    if provider_log.exists():
        files.append(provider_log)
    return list(dict.fromkeys(files))


def test_no_token_reaches_any_log(
    tmp_path: Path, oidc_issuer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env.PILOT_LOG_LEVEL, "DEBUG")  # the local pilots inherit it
    oidc = oidc_settings(oidc_issuer) | introspection_settings()
    gw = DebugGateway(tmp_path / "gateway", oidc=oidc)
    config_dir = tmp_path / "alice-config"
    outputs = [tmp_path / "login.out", tmp_path / "client.out", tmp_path / "refused.out"]
    secrets: dict[str, str] = {}
    try:
        gw.start()
        wait_until(lambda: len(gw.pilot_pids()) >= 2, timeout=60)
        secrets |= _registration_tokens(gw)
        native = gw.make_user_token("alice")
        secrets |= {
            "admin user token": gw.user_token,
            "site token": gw.site_token,
            "alice's farside token": native,
            "the gateway's introspection client secret": GATEWAY_CLIENT[1],
        }
        opaque = secrets["alice's opaque access token"] = access_token(
            oidc_issuer, "alice", OPAQUE_CLIENT
        )
        with gw.http(opaque) as http:  # introspected at the provider, then remembered
            assert http.get("/whoami").json()["name"] == "alice"
            assert http.get("/jobs").status_code == 200

        # farside login, then a client that must renew the expired access token first
        _login(gw, config_dir, outputs[0])
        wait_past_expiry(_oidc_tokens(config_dir, secrets))
        script = tmp_path / "client_run.py"
        script.write_text(CLIENT_SCRIPT)
        said = _run_client([str(script)], config_dir, outputs[1], GW_URL=gw.url, NATIVE=native)
        assert "result 42" in said, said
        assert "cancelled [" in said, said
        assert said.count("job says 21") == 2, said  # the logs, read once per token
        _oidc_tokens(config_dir, secrets)
        said = _run_client(["-m", "farside", "whoami"], config_dir, outputs[1])
        assert said.startswith("alice (user)"), said
        _oidc_tokens(config_dir, secrets)

        # a pilot registered by hand, working for a while with its own token
        pilot_id, pilot_token = register_pilot(gw, gw.site_token)
        secrets["a registered pilot's own token"] = pilot_token
        with gw.http(pilot_token) as http:
            assert http.post(f"/pilots/{pilot_id}/heartbeat", json={"held": []}).is_success
            assert http.post(f"/pilots/{pilot_id}/exit", json=EXIT).is_success

        # refused calls: tokens that are wrong in every way, at the gateway and the client
        genuine = access_token(oidc_issuer, "bob")
        expired = expiring_user_token(gw, "bob", ttl=1)
        expired_at = time.time() + 1
        refused = {
            "an unknown farside token": "fsu_" + "Q" * 43,
            "an expired farside token": expired,
            "a forged JWT": resigned(genuine),
            "a wrong-audience JWT": access_token(oidc_issuer, "bob", OTHER_CLIENT),
            "a revoked pilot token": pilot_token,
            "an opaque token": "opaque-secret-" + "Z" * 30,
        }
        secrets |= refused | {"bob's access token": genuine}
        (bobs_job,) = submit(gw, genuine, job())
        wait_past_expiry(farside_expiry=expired_at)
        with gw.http() as http:
            for token in refused.values():
                for method, path in (("GET", "/whoami"), ("POST", f"/pilots/{pilot_id}/exit")):
                    response = http.request(method, path, headers=bearer(token), json=EXIT)
                    assert response.status_code == 401, response.text
            # a valid token where it may not go
            exit_as_bob = http.post(f"/pilots/{pilot_id}/exit", headers=bearer(genuine), json=EXIT)
            assert exit_as_bob.status_code == 403
            assert (
                http.get(
                    f"/jobs/{bobs_job}", headers=bearer(refused["an unknown farside token"])
                ).status_code
                == 401
            )
        said = _run_client(
            ["-m", "farside", "whoami"],
            config_dir,
            outputs[2],
            FARSIDE_TOKEN=refused["an unknown farside token"],
            FARSIDE_GATEWAY_URL=gw.url,
        )
        assert "unknown or expired token" in said, said
    finally:
        gw.cleanup()

    port = int(oidc_issuer.rsplit(":", 1)[1])
    files = _logs(gw, port, outputs)
    assert gw.log_path in files, files
    assert any("pilots" in f.parts for f in files), files
    assert gw.log_path.stat().st_size > 0
    leaks = grep_secrets(files, secrets)
    assert not leaks, "tokens found in logs:\n" + "\n".join(leaks)
    shaped = [
        f"{path}: {match.group()[:12].decode()}..."
        for path in files
        for match in TOKEN_SHAPES.finditer(path.read_bytes())
    ]
    assert not shaped, "token-shaped strings found in logs:\n" + "\n".join(shaped)
