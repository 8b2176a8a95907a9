"""The world the authorization tests act in: a gateway that trusts the real test OIDC provider
(JWTs, and opaque tokens by introspection) and a real JupyterHub beside it (hub tokens), the
callers (:data:`IDENTITIES`, each with a real token) and objects their calls name: alice's
finished job, a job a pilot holds, the pilots. ``tests/integration/test_authz_matrix.py``
uses it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from farside_platform.hub import HubProcess
from support.authz import (
    ADMIN_GROUP,
    expiring_user_token,
    introspection_settings,
    job,
    oidc_settings,
    register_pilot,
    resigned,
    site_token_for,
    submit,
    tampered,
    wait_past_expiry,
)
from support.harness import GatewayProcess
from support.hub import hub_settings, hub_tester_config, hub_user_token
from support.oidc import (
    OPAQUE_CLIENT,
    OPAQUE_SHORT_CLIENT,
    OTHER_CLIENT,
    SHORT_CLIENT,
    access_token,
    revoke,
    start_provider,
)

OTHER_ISSUER_PORT = 9091  # a second provider: another issuer with keys of its own
ALICE_GROUP = "alice-map"

# ---------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    key: str  # the test id
    role: str  # the column of ROWS that says what it may do
    name: str | None = None  # whoami's name
    kind: str | None = None  # whoami's kind


#: ``anon``: every caller the gateway must not know (401 wherever a token is needed)
IDENTITIES = [
    Identity("alice-farside", "alice", "alice", "user"),
    Identity("alice-oidc", "alice", "alice", "user"),
    Identity("bob-farside", "bob", "bob", "user"),
    Identity("bob-oidc", "bob", "bob", "user"),
    Identity("admin-farside", "admin", "root", "admin"),
    Identity("admin-oidc", "admin", "admin", "admin"),
    Identity("alice-opaque", "alice", "alice", "user"),  # opaque: introspected
    Identity("bob-opaque", "bob", "bob", "user"),
    Identity("admin-opaque", "admin", "admin", "admin"),
    Identity("alice-hub", "alice", "alice", "user"),  # hub tokens with the service's scope
    Identity("bob-hub", "bob", "bob", "user"),
    Identity("admin-hub", "admin", "admin", "admin"),  # a hub admin
    Identity("pilot", "pilot", "local", "pilot"),
    Identity("other-pilot", "other_pilot", "local", "pilot"),
    Identity("site", "site", "local", "site"),
    Identity("other-site", "other_site", "remote", "site"),  # a site token of another site
    Identity("no-token", "anon"),
    Identity("unknown-farside-token", "anon"),
    Identity("expired-farside", "anon"),
    Identity("expired-oidc", "anon"),
    Identity("expired-opaque", "anon"),
    Identity("revoked-opaque", "anon"),
    Identity("unknown-opaque", "anon"),  # neither the hub nor the issuer knows it
    Identity("wrong-audience", "anon"),
    Identity("wrong-issuer", "anon"),
    Identity("forged-key", "anon"),  # re-signed with a local key and a kid the issuer lacks
    Identity("tampered-payload", "anon"),  # claims changed, the issuer's signature kept
    Identity("hub-without-scope", "hub"),  # a real hub token of alice: 403 wherever it goes
]


# ---------------------------------------------------------------- the world


@dataclass
class World:
    gateway: GatewayProcess
    tokens: dict[str, str | None]
    site_token: str
    finished_job: int  # alice's: finished, with a result and a log line
    held_job: int  # alice's: takes finished_job as input; the pilot holds it
    queued_job: int  # alice's, in group ALICE_GROUP: queued, no pilot will take it
    bob_job: int  # bob's own, queued
    pilot_id: int
    other_pilot_id: int
    cluster: str  # alice's, no workers, with a second group "extra"
    doomed_cluster: str  # alice's, for the DELETE row
    workflow: int  # alice's run: its body queued, no pilot will take it
    doomed_workflow: int  # alice's, for the kill row (then cancelled: resume has nothing)
    site_name: str = "local"

    def http(self, token: str | None = None) -> httpx.Client:
        return self.gateway.http(token)

    def owners(self) -> dict[int, str]:
        """Every job's owner, as an admin sees them."""
        with self.http(self.tokens["admin-farside"]) as admin:
            listed = admin.get("/jobs", params={"limit": 10_000}).json()["jobs"]
        return {j["id"]: j["owner"] for j in listed}


def _play_pilot(gw: GatewayProcess, pilot_token: str, pilot_id: int, memory: str) -> int:
    """Acquire exactly one job as the pilot; its id."""
    with gw.http(pilot_token) as http:
        got = http.post(
            f"/pilots/{pilot_id}/acquire",
            json={"max_jobs": 1, "cores": 1, "memory": memory, "wait": 0},
        )
    assert got.status_code == 200, got.text
    (assigned,) = got.json()["jobs"]
    return int(assigned["job_id"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, oidc_issuer: str) -> Iterator[World]:
    state = tmp_path_factory.mktemp("authz")
    # a real JupyterHub (farside_hub's config, as `farside up --hub` runs it) for hub tokens;
    # nobody logs in there, so its OIDC client's redirect URI does not matter
    hub_admin_token = secrets.token_hex(16)
    settings = hub_settings(state, oidc_issuer)
    settings.extra_config = hub_tester_config(hub_admin_token) + (
        'c.Authenticator.admin_users = {"admin"}\n'
    )
    gw = GatewayProcess(
        state / "gateway",
        # no pilots of its own: the tests play the pilot, and the objects stay put
        sites=[
            {"name": "local", "min_warm": 0, "max_pilots": 0, "cores": 2, "memory": "4 GiB"},
            {"name": "remote", "min_warm": 0, "max_pilots": 0},
        ],
        heartbeat_timeout=3600.0,  # the registered pilots stay alive through the module
        # the POST /clusters row makes a cluster per user identity: no dashboards, and the
        # clusters stay (no heartbeats needed) through the module
        clusters={"dashboard": False, "client_timeout": 3600.0},
        oidc=oidc_settings(oidc_issuer) | introspection_settings(),
        hub={"api_url": settings.api_url, "hub_admins_are_admins": True},
    )
    hub: HubProcess | None = None
    try:
        gw.start()
        settings.gateway_url = gw.url
        hub = HubProcess(settings, "local-hub-secret-not-for-production").start()
        tokens = _hub_tokens(settings.api_url, hub_admin_token)
        yield _make_world(gw, oidc_issuer, tokens)
    finally:
        if hub is not None:
            hub.stop()
        gw.cleanup()


def _hub_tokens(api_url: str, admin_token: str) -> dict[str, str | None]:
    scope = "access:services!service=farside"
    headers = {"Authorization": f"token {admin_token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as api:
        tokens: dict[str, str | None] = {
            f"{user}-hub": hub_user_token(api, user, [scope]) for user in ("alice", "bob", "admin")
        }
        tokens["hub-without-scope"] = hub_user_token(api, "alice", ["read:users:name!user"])
    return tokens


def _opaque(issuer: str, user: str, client_id: str = OPAQUE_CLIENT) -> str:
    return access_token(issuer, user, client_id)


def _revoked_opaque(issuer: str) -> str:
    token = _opaque(issuer, "alice")
    revoke(issuer, token, OPAQUE_CLIENT)
    return token


def _make_world(gw: GatewayProcess, issuer: str, hub_tokens: dict[str, str | None]) -> World:
    # the short-lived tokens first: they expire while the rest is made
    expired_oidc = access_token(issuer, "alice", SHORT_CLIENT)
    expired_opaque = _opaque(issuer, "alice", OPAQUE_SHORT_CLIENT)
    expired_farside = expiring_user_token(gw, "alice", ttl=1)
    farside_expiry = time.time() + 4  # the opaque token's 3 s, and the provider's second
    alice_oidc = access_token(issuer, "alice")
    tokens: dict[str, str | None] = {
        "alice-farside": gw.make_user_token("alice", groups=("atlas",)),
        "alice-oidc": alice_oidc,
        "bob-farside": gw.make_user_token("bob"),
        "bob-oidc": access_token(issuer, "bob"),
        "admin-farside": gw.make_user_token("root", admin=True),
        "admin-oidc": access_token(issuer, "admin"),
        "no-token": None,
        "unknown-farside-token": "fsu_" + "x" * 43,
        "expired-farside": expired_farside,
        "expired-oidc": expired_oidc,
        "wrong-audience": access_token(issuer, "alice", OTHER_CLIENT),
        "wrong-issuer": access_token(start_provider(OTHER_ISSUER_PORT), "alice"),
        "forged-key": resigned(alice_oidc),
        # alice's genuine token, turned into the admin's
        "tampered-payload": tampered(
            alice_oidc, preferred_username="admin", sub="admin", groups=[ADMIN_GROUP]
        ),
        "alice-opaque": _opaque(issuer, "alice"),
        "bob-opaque": _opaque(issuer, "bob"),
        "admin-opaque": _opaque(issuer, "admin"),
        "expired-opaque": expired_opaque,
        "revoked-opaque": _revoked_opaque(issuer),
        "unknown-opaque": "made-up-opaque-token-" + secrets.token_urlsafe(16),
        **hub_tokens,
    }
    site_token = gw.site_token
    pilot_id, pilot_token = register_pilot(gw, site_token)
    other_pilot_id, other_pilot_token = register_pilot(gw, site_token)
    tokens |= {
        "pilot": pilot_token,
        "other-pilot": other_pilot_token,
        "site": site_token,
        "other-site": site_token_for(gw, "remote"),
    }

    alice = str(tokens["alice-farside"])
    (finished,) = submit(gw, alice, job(name="alice-finished"))
    assert _play_pilot(gw, pilot_token, pilot_id, "1 GiB") == finished
    report = {
        "updates": [
            {
                "job_id": finished,
                "attempt": 1,
                "state": "finished",
                "time": 1.0,
                "exit_code": 0,
                "result": "YWxpY2UncyByZXN1bHQ=",
            },
        ],
        "logs": [
            {
                "job_id": finished,
                "attempt": 1,
                "stream": "stdout",
                "time": 1.0,
                "text": "alice's private log line",
            }
        ],
    }
    with gw.http(pilot_token) as http:
        done = http.post(f"/pilots/{pilot_id}/report", json=report)
        assert done.status_code == 200, done.text
    (held,) = submit(gw, alice, job(name="alice-held", after=[finished], inputs=[finished]))
    assert _play_pilot(gw, pilot_token, pilot_id, "1 GiB") == held
    (queued,) = submit(gw, alice, job(name="alice-queued", group=ALICE_GROUP))
    (bob_job,) = submit(gw, str(tokens["bob-farside"]), job(name="bob-own"))
    cluster, doomed = (_new_cluster(gw, alice) for _ in range(2))
    workflow, doomed_workflow = (_new_workflow(gw, alice, name) for name in ("run", "doomed"))
    wait_past_expiry(expired_oidc, farside_expiry=farside_expiry)
    return World(
        gw,
        tokens,
        site_token,
        finished,
        held,
        queued,
        bob_job,
        pilot_id,
        other_pilot_id,
        cluster,
        doomed,
        workflow,
        doomed_workflow,
    )


def _new_workflow(gw: GatewayProcess, token: str, name: str) -> int:
    """A workflow run whose body needs more memory than the matrix's acquires offer."""
    with gw.http(token) as http:
        made = http.post("/workflows", json={**job(), "name": name})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def _new_cluster(gw: GatewayProcess, token: str) -> str:
    """A cluster without workers (no jobs, nothing a pilot takes) and a second group."""
    body = {"default": {"workers": 0}, "groups": {"extra": {"workers": 0}}}
    with gw.http(token) as http:
        made = http.post("/clusters", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["name"])
