"""Helpers for the authorization tests: a gateway that trusts the test OIDC provider, jobs
and pilots made over plain HTTP, forged tokens and a server-sent-events reader."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from farside_protocol.payload import dump_function, encode_call
from support.harness import GatewayProcess
from support.oidc import GATEWAY_CLIENT, SCOPE

ADMIN_GROUP = "farside-admins"


def oidc_settings(issuer: str) -> dict[str, Any]:
    """The ``[oidc]`` table of a gateway that trusts the test provider at ``issuer``."""
    return {
        "issuer": issuer,
        "audience": ["farside"],
        "client_id": "farside-cli",
        "admin_groups": [ADMIN_GROUP],
        "login_scopes": SCOPE.split(),
        "leeway": 0,
        "jwks_min_refresh": 0,
    }


def introspection_settings(secret: str = GATEWAY_CLIENT[1]) -> dict[str, Any]:
    """What ``[oidc]`` adds to check the test provider's opaque tokens by introspection."""
    return {
        "introspection": True,
        "introspection_client_id": GATEWAY_CLIENT[0],
        "introspection_client_secret": secret,
    }


def payload() -> str:
    return base64.b64encode(encode_call(dump_function(abs), (-1,), {})).decode()


def job(**fields: Any) -> dict[str, Any]:
    return {"payload": payload(), "resources": {"memory": "100 MB"}, **fields}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def submit(gw: GatewayProcess, token: str, *jobs: dict[str, Any]) -> list[int]:
    with gw.http(token) as http:
        response = http.post("/jobs", json={"jobs": list(jobs)})
    assert response.status_code == 201, response.text
    ids: list[int] = response.json()["job_ids"]
    return ids


def register_pilot(gw: GatewayProcess, site_token: str, site: str = "local") -> tuple[int, str]:
    """Register a pilot with a site token, as a pilot started by hand would: (id, own token)."""
    body = {
        "site": site,
        "cores": 2,
        "memory": "4 GiB",
        "hostname": "authz-test",
        "pid": 1,
        "version": "test",
    }
    with gw.http(site_token) as http:
        response = http.post("/pilots", json=body)
    assert response.status_code == 201, response.text
    reg = response.json()
    return int(reg["pilot_id"]), str(reg["token"])


def expiring_user_token(gw: GatewayProcess, user: str, ttl: float) -> str:
    """A farside user token that expires ``ttl`` seconds from now (``--ttl``)."""
    args = gw._cli("token", "--user", user, "--ttl", str(ttl))
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def site_token_for(gw: GatewayProcess, site: str) -> str:
    """A site token (``farside gateway token --site``)."""
    out = subprocess.run(
        gw._cli("token", "--site", site), capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def resigned(token: str, kid: str = "a-key-the-issuer-never-had") -> str:
    """The token's claims and header, signed with a locally generated RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


def tampered(token: str, **claims: Any) -> str:
    """The token with its payload changed and its genuine signature kept."""
    header, body, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(claims)
    new_body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{new_body}.{signature}"


def wait_past_expiry(*tokens: str, farside_expiry: float = 0.0) -> None:
    """Sleep until every JWT in ``tokens`` and ``farside_expiry`` (a time) lie in the past."""
    deadline = farside_expiry
    for token in tokens:
        deadline = max(
            deadline, float(jwt.decode(token, options={"verify_signature": False})["exp"])
        )
    while time.time() <= deadline + 0.5:
        time.sleep(0.1)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) of each server-sent event of a streaming response, as they arrive."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def grep_secrets(files: list[Path], secrets: dict[str, str]) -> list[str]:
    """``"file: secret name"`` for each secret found in each file (also base64 forms)."""
    found = []
    for path in files:
        text = path.read_bytes()
        for name, secret in secrets.items():
            forms = {secret.encode(), base64.b64encode(secret.encode())}
            if len(secret) > 24:  # a cut copy (e.g. a log line shortened) still counts
                forms.add(secret[-24:].encode())
            if any(form in text for form in forms):
                found.append(f"{path}: {name}")
    return found
