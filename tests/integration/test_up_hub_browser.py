"""``farside up --hub`` as a user starts it, then alice's whole way in through a real browser:
the hub's login button, the OIDC provider's form, JupyterLab, a notebook cell that submits a
farside task to the local platform's gateway and shows its result; then Ctrl-C stops it all.

The provider is a private instance of ``scripts/oidc.sh``'s, whose ``farside-hub`` client
names this hub's (free) port in its redirect URI; the proxy is ``scripts/hub.sh``'s, found by
``farside up`` itself. Screenshot: ``$FARSIDE_TEST_ARTIFACTS/farside_up_hub.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.browser import log_in_and_run_a_task
from support.harness import wait_until
from support.hub import HUB_CLIENT, artifacts_dir, free_port, proxy_path, start_hub_provider
from support.oidc import OPAQUE_CLIENT, access_token

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    log: Path
    config_dir: Path
    issuer: str
    hub_url: str
    secret: str  # the hub's client secret at the issuer
    state: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _port_pair() -> int:
    """A free port whose successor is free too (``farside up`` puts the proxy's API there)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free consecutive ports")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    state = tmp_path_factory.mktemp("up-hub")
    proxy_path()  # scripts/hub.sh: what a user runs once before `farside up --hub`
    hub_port, api_port, secret = free_port(), _port_pair(), secrets.token_hex(16)
    hub_url = f"http://127.0.0.1:{hub_port}"
    issuer, provider = start_hub_provider(state, hub_url + "/hub/oauth_callback", secret)
    env = {
        **os.environ,
        "FARSIDE_CONFIG_DIR": str(state / "config"),
        "FARSIDE_HUB_CLIENT_SECRET": secret,
    }
    command = [
        sys.executable,
        "-m",
        "farside",
        "up",
        "--port",
        "0",
        "--state-dir",
        str(state / "up"),
        "--hub",
        "--issuer",
        issuer,
        "--client-id",
        HUB_CLIENT,
        "--hub-port",
        str(hub_port),
        "--hub-api-port",
        str(api_port),
        "--allowed-group",
        "analysts",
        "--admin-group",
        "farside-admins",
    ]
    log = state / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Up(proc, log, state / "config", issuer, hub_url, secret, state)
    try:
        wait_until(
            lambda: "JupyterHub is up at" in running.output() or proc.poll() is not None,
            timeout=180,
            interval=0.2,
        )
        assert proc.poll() is None, f"farside up --hub exited:\n{running.output()}"
        assert f"JupyterHub is up at {hub_url}" in running.output(), running.output()
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the test's own Ctrl-C did not stop it
            proc.wait()
        provider.kill()
        provider.wait()


@pytest.mark.timeout(900)
def test_alice_gets_a_notebook_through_farside_up_hub(up: Up, page: Any) -> None:
    shot = artifacts_dir() / "farside_up_hub.png"
    log_in_and_run_a_task(page, up.hub_url, up.issuer, shot)
    # the task ran on the local platform's gateway, as alice (her OIDC token, from the hub)
    client = json.loads((up.config_dir / "client.json").read_text())
    token = Path(client["token_file"]).read_text().strip()  # the account's admin token
    with httpx.Client(
        base_url=client["url"] + "/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as gw:
        jobs = gw.get("/jobs").json()["jobs"]
    assert {job["owner"] for job in jobs} == {"alice"}, jobs
    assert {job["state"] for job in jobs} == {"finished"}, jobs
    # an opaque access token (as IAM may issue) from the same issuer: the gateway introspects
    # it there as the hub's client, after the hub said it does not know it
    opaque = access_token(up.issuer, "bob", OPAQUE_CLIENT)
    whoami = httpx.get(
        client["url"] + "/api/v1/whoami", headers={"Authorization": f"Bearer {opaque}"}
    )
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["name"] == "bob"

    # Ctrl-C stops the hub, its proxy and alice's server with the gateway and the pilots
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=120) == 0, up.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(up.hub_url + "/hub/api/", timeout=5)
    # the client secret (the hub's, and the gateway's for introspection) reached no log
    logs = [up.log, *(up.state / "up").rglob("*.log")]
    assert len(logs) > 1, logs  # farside up's output and the hub's log at least
    assert not [path for path in logs if up.secret in path.read_text(errors="replace")]
