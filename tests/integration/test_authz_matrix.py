"""The authorization matrix: every endpoint of the running gateway's OpenAPI spec, times every kind
of caller, each cell with the one status the API defines for it; then what users may see.

The endpoints come from ``/openapi.json`` of a live gateway, so a new endpoint fails
``test_every_endpoint_has_a_row`` until its row is added to ``ROWS``. Identities: users A
(alice) and B (bob) and an admin, each with a farside token, a JWT and an opaque OIDC access
token from the real test provider (the opaque one checked by introspection), and a
JupyterHub API token from a real hub beside the gateway; a pilot's own token; a site token; a
hub token without the service's scope; and tokens that must all be refused.
Path parameters name real objects: alice's finished job, a job the pilot holds, the pilot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz_support import (
    bearer,
    expiring_user_token,
    job,
    register_pilot,
    sse_events,
    submit,
    wait_past_expiry,
)
from authz_world import ALICE_GROUP, IDENTITIES, Identity, World, world
from farside_pilot.protocol import API_PREFIX
from oidc_support import oidc_issuer

pytestmark = pytest.mark.integration
__all__ = ["oidc_issuer", "world"]  # fixtures, used by name
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
               422: "invalid_request"}  # fmt: skip


# ---------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as in the OpenAPI spec, without the /api/v1 prefix
    expect: dict[str, int]  # role -> status
    body: Any = None  # JSON body
    content: bytes | None = None  # raw body
    query: dict[str, Any] = field(default_factory=dict)
    #: placeholder -> World attribute; the defaults are in PATH_VALUES
    values: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # text/event-stream: read the first event only
    fresh_pilot: bool = False  # act on a pilot made for this cell (the call ends it)
    #: role -> xfail reason, for a genuine bug in code this change may not touch
    known_bugs: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


PATH_VALUES = {
    "job_id": "finished_job",
    "pilot_id": "pilot_id",
    "parent_id": "finished_job",
    "name": "site_name",
    "workflow_id": "workflow",
}


def _user(owner: int, other: int, admin: int, **rest: Any) -> dict[str, int]:
    """A user endpoint: pilot and site tokens get 403, unknown callers 401."""
    return {"alice": owner, "bob": other, "admin": admin, "pilot": 403, "other_pilot": 403,
            "site": 403, "other_site": 403, "anon": 401, "hub": 403, **rest}  # fmt: skip


def _pilot(status: int) -> dict[str, int]:
    """An endpoint for one pilot's own token: every other token gets 403."""
    return {"alice": 403, "bob": 403, "admin": 403, "pilot": status, "other_pilot": 403,
            "site": 403, "other_site": 403, "anon": 401, "hub": 403}  # fmt: skip


def _any(status: int) -> dict[str, int]:
    roles = ("alice", "bob", "admin", "pilot", "other_pilot", "site", "other_site")
    return {role: status for role in roles} | {"anon": 401, "hub": 403}


ACQUIRE = {"max_jobs": 1, "cores": 1, "memory": "1 MiB", "wait": 0}  # nothing queued fits
REGISTRATION = {"site": "local", "cores": 1, "memory": "1 GiB", "hostname": "matrix", "pid": 1,
                "version": "test"}  # fmt: skip

ROWS = [
    Row("POST", "/jobs", _user(201, 201, 201), body={"jobs": [job(name="matrix")]}),
    Row("GET", "/jobs", _user(200, 200, 200)),
    Row("GET", "/jobs/{job_id}", _user(200, 404, 200)),
    # a finished job: cancelling it changes nothing, but only its owner and admins may try
    Row("POST", "/jobs/cancel", _user(200, 404, 200), body={"job_ids": ["{finished_job}"]}),
    Row("GET", "/jobs/{job_id}/result", _user(200, 404, 200)),
    # the job has ended: nothing to dump (409) for those who may see it
    Row("POST", "/jobs/{job_id}/debug", _user(409, 404, 409)),
    Row("POST", "/jobs/{job_id}/retry", _user(201, 404, 201), body={}),
    Row("GET", "/jobs/{job_id}/logs", _user(200, 404, 200)),
    Row("GET", "/jobs/{job_id}/logs/stream", _user(200, 404, 200), stream=True),
    Row("GET", "/events", _user(200, 200, 200), stream=True),
    # users may not register pilots, nor a site's token at another site; a pilot's own token
    # has registered already (409)
    Row(
        "POST",
        "/pilots",
        _user(403, 403, 403, pilot=409, other_pilot=409, site=201),
        body=REGISTRATION,
    ),
    Row("GET", "/pilots", _user(200, 200, 200)),
    Row("POST", "/pilots/{pilot_id}/acquire", _pilot(200), body=ACQUIRE),
    Row("POST", "/pilots/{pilot_id}/heartbeat", _pilot(200), body={"held": ["{held_job}"]}),
    Row("POST", "/pilots/{pilot_id}/report", _pilot(200), body={"updates": [], "logs": []}),
    Row(
        "POST",
        "/pilots/{pilot_id}/release",
        _pilot(200),
        # not the held job: later rows need it held; who may call is what is checked here
        body={"job_ids": ["{finished_job}"], "reason": "the matrix asks"},
    ),
    Row(
        "PUT",
        "/pilots/{pilot_id}/jobs/{job_id}/result",
        _pilot(204),
        content=b"uploaded",
        query={"attempt": 1},
        values={"job_id": "held_job"},
    ),
    Row(
        "GET",
        "/pilots/{pilot_id}/jobs/{job_id}/payload",
        _pilot(200),
        values={"job_id": "held_job"},
    ),
    Row(
        "GET",
        "/pilots/{pilot_id}/jobs/{job_id}/inputs/{parent_id}",
        _pilot(200),
        values={"job_id": "held_job"},
    ),
    Row(
        "POST",
        "/pilots/{pilot_id}/exit",
        _pilot(204),
        body={"reason": "authz matrix"},
        fresh_pilot=True,
    ),
    Row("GET", "/whoami", _any(200)),
    Row("GET", "/sites", _user(200, 200, 200)),
    Row("PUT", "/sites/{name}/status", _user(403, 403, 200), body={"status": "online"}),
    Row("GET", "/metrics", _user(403, 403, 200)),
    # Dask clusters: alice's (no workers) stands in for {name}; other users get 404
    Row("POST", "/clusters", _user(201, 201, 201), body={"default": {"workers": 0}}),
    Row("GET", "/clusters", _user(200, 200, 200)),
    Row("GET", "/clusters/{name}", _user(200, 404, 200), values={"name": "cluster"}),
    Row("GET", "/clusters/{name}/credentials", _user(200, 404, 200), values={"name": "cluster"}),
    Row(
        "POST",
        "/clusters/{name}/scale",
        _user(200, 404, 200),
        body={"workers": 0},
        values={"name": "cluster"},
    ),
    # the group exists: its owner and admins get as far as 409
    Row(
        "POST",
        "/clusters/{name}/groups",
        _user(409, 404, 409),
        body={"name": "extra", "spec": {"workers": 0}},
        values={"name": "cluster"},
    ),
    Row(
        "POST",
        "/clusters/{name}/workers/stop",
        _user(200, 404, 200),
        body={"workers": []},
        values={"name": "cluster"},
    ),
    Row("POST", "/clusters/{name}/heartbeat", _user(200, 404, 200), values={"name": "cluster"}),
    Row("DELETE", "/clusters/{name}", _user(200, 404, 200), values={"name": "doomed_cluster"}),
    # workflow runs: alice's run (its body queued) stands in for {workflow_id}
    Row("POST", "/workflows", _user(201, 201, 201), body={**job(), "name": "matrix"}),
    Row("GET", "/workflows", _user(200, 200, 200)),
    Row("GET", "/workflows/{workflow_id}", _user(200, 404, 200)),
    Row("POST", "/workflows/{workflow_id}/pause", _user(200, 404, 200)),
    # killed (its row) or never paused: nothing to resume, for those who may see it
    Row(
        "POST",
        "/workflows/{workflow_id}/resume",
        _user(409, 404, 409),
        values={"workflow_id": "doomed_workflow"},
    ),
    Row(
        "POST",
        "/workflows/{workflow_id}/kill",
        _user(200, 404, 200),
        values={"workflow_id": "doomed_workflow"},
    ),
    # queued or paused, not failed: nothing to retry
    Row("POST", "/workflows/{workflow_id}/retry", _user(409, 404, 409)),
    # only the run's own body reports its progress
    Row("POST", "/workflows/{workflow_id}/report", _user(403, 403, 403), body={"values": {}}),
    # how to log in: open to all, whatever the token
    Row("GET", "/auth", _any(200) | {"anon": 200, "hub": 200}),
]


def _cell_params() -> list[Any]:
    params = []
    for row in ROWS:
        for identity in IDENTITIES:
            marks = []
            if identity.role in row.known_bugs:
                marks.append(pytest.mark.xfail(reason=row.known_bugs[identity.role], strict=True))
            params.append(pytest.param(row, identity, id=f"{row.endpoint}|{identity.key}",
                                       marks=marks))  # fmt: skip
    return params


# ---------------------------------------------------------------- the matrix


def _live_endpoints(world: World) -> set[str]:
    with httpx.Client(base_url=world.gateway.url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
    return {
        f"{method.upper()} {path.removeprefix(API_PREFIX)}"
        for path, operations in spec["paths"].items()
        for method in operations
    }


def test_every_endpoint_has_a_row(world: World) -> None:
    live = _live_endpoints(world)
    rows = [row.endpoint for row in ROWS]
    assert len(rows) == len(set(rows)), "ROWS names an endpoint twice"
    missing = sorted(live - set(rows))
    stale = sorted(set(rows) - live)
    assert not missing, (
        f"endpoints without a row in the authorization matrix: {missing}. Add a Row for each "
        f"to ROWS in {Path(__file__).name}, saying which status every kind of caller gets"
    )
    assert not stale, f"ROWS names endpoints the gateway no longer has: {stale}; remove them"
    identities = {i.role for i in IDENTITIES}
    for row in ROWS:
        lacking = identities - set(row.expect)
        assert not lacking, f"{row.endpoint}: no expected status for {sorted(lacking)}"


def _fill(template: Any, world: World, values: dict[str, Any]) -> Any:
    """Put world values into ``"{name}"`` strings of a JSON body (whole-string only)."""
    if isinstance(template, dict):
        return {k: _fill(v, world, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, world, values) for v in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        name = template[1:-1]
        return values[name] if name in values else getattr(world, name)
    return template


def _call(world: World, row: Row, identity: Identity) -> tuple[int, str]:
    token = world.tokens[identity.key]
    values: dict[str, Any] = {}
    for placeholder in [p.split("}")[0] for p in row.path.split("{")[1:]]:
        attribute = row.values.get(placeholder) or PATH_VALUES.get(placeholder)
        assert attribute, f"{row.endpoint}: say which object {{{placeholder}}} names (Row.values)"
        values[placeholder] = getattr(world, attribute)
    if row.fresh_pilot:
        pilot_id, pilot_token = register_pilot(world.gateway, world.site_token)
        values["pilot_id"] = pilot_id
        if identity.role == "pilot":
            token = pilot_token
    path = row.path.format(**values)
    request: dict[str, Any] = {"params": row.query, "headers": bearer(token)}
    if row.body is not None:
        request["json"] = _fill(row.body, world, values)
    if row.content is not None:
        request["content"] = row.content
    with world.http() as http:
        if not row.stream:
            response = http.request(row.method, path, **request)
            return response.status_code, response.text
        with http.stream(row.method, path, **request) as streamed:
            if streamed.status_code != 200:
                return streamed.status_code, streamed.read().decode()
            assert streamed.headers["content-type"].startswith("text/event-stream")
            event, data = next(sse_events(streamed))  # the first event only
            return 200, f"event: {event}\ndata: {data}"


@pytest.mark.parametrize(("row", "identity"), _cell_params())
def test_cell(world: World, row: Row, identity: Identity) -> None:
    if row.endpoint not in _live_endpoints_cached(world):
        pytest.fail(f"{row.endpoint} is not in the gateway's OpenAPI spec; remove its row")
    status, text = _call(world, row, identity)
    expected = row.expect[identity.role]
    assert status == expected, (
        f"{row.endpoint} as {identity.key}: {status}, expected {expected}: {text[:500]}"
    )
    if expected in ERROR_CODES:  # the one error envelope, with the matching code
        assert json.loads(text)["error"]["code"] == ERROR_CODES[expected], text


_LIVE: dict[int, set[str]] = {}


def _live_endpoints_cached(world: World) -> set[str]:
    if id(world) not in _LIVE:
        _LIVE[id(world)] = _live_endpoints(world)
    return _LIVE[id(world)]


# ---------------------------------------------------------------- what users see


KINDS = ["farside", "oidc", "opaque", "hub"]


@pytest.mark.parametrize("kind", KINDS)
def test_whoami_names_the_caller(world: World, kind: str) -> None:
    for identity in IDENTITIES:
        if identity.role in ("alice", "bob", "admin") and not identity.key.endswith(kind):
            continue
        if identity.name is None:
            continue
        with world.http(world.tokens[identity.key]) as http:
            me = http.get("/whoami").json()
        assert (me["name"], me["kind"]) == (identity.name, identity.kind), identity.key
    with world.http(world.tokens["pilot"]) as http:
        assert http.get("/whoami").json()["pilot_id"] == world.pilot_id


@pytest.mark.parametrize("kind", KINDS)
def test_job_lists_hold_only_the_callers_jobs(world: World, kind: str) -> None:
    owners = world.owners()
    alice_jobs = {i for i, o in owners.items() if o == "alice"}
    bob_jobs = {i for i, o in owners.items() if o == "bob"}
    assert {world.finished_job, world.held_job, world.queued_job} <= alice_jobs
    assert world.bob_job in bob_jobs
    for user, mine in (("alice", alice_jobs), ("bob", bob_jobs)):
        with world.http(world.tokens[f"{user}-{kind}"]) as http:
            for query in ({}, {"state": "queued"}, {"group": ALICE_GROUP}, {"limit": 10_000}):
                listed = {j["id"] for j in http.get("/jobs", params=query).json()["jobs"]}
                assert listed <= mine, (user, query, sorted(listed - mine))
            assert {j["id"] for j in http.get("/jobs").json()["jobs"]} == mine, user
    with world.http(world.tokens[f"admin-{kind}"]) as admin:
        everyone = {j["id"] for j in admin.get("/jobs", params={"limit": 10_000}).json()["jobs"]}
    assert alice_jobs | bob_jobs <= everyone


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_lists_hold_only_the_callers_clusters(world: World, kind: str) -> None:
    with world.http(world.tokens[f"bob-{kind}"]) as bob:
        made = bob.post("/clusters", json={"default": {"workers": 0}})
        assert made.status_code == 201, made.text
    with world.http(world.tokens[f"admin-{kind}"]) as admin:
        everyone = admin.get("/clusters", params={"ended": "true"}).json()["clusters"]
    owners = {c["name"]: c["owner"] for c in everyone}
    assert owners[world.cluster] == "alice"
    for user in ("alice", "bob"):
        with world.http(world.tokens[f"{user}-{kind}"]) as http:
            listed = http.get("/clusters", params={"ended": "true"}).json()["clusters"]
        assert listed, user
        assert {c["owner"] for c in listed} == {user}, (user, listed)
        mine = {name for name, owner in owners.items() if owner == user}
        assert {c["name"] for c in listed} <= mine


@pytest.mark.parametrize("kind", KINDS)
def test_bob_cannot_see_or_change_alices_jobs(world: World, kind: str) -> None:
    bob = world.tokens[f"bob-{kind}"]
    alice = world.tokens[f"alice-{kind}"]
    with world.http(bob) as b, world.http(alice) as a:
        for job_id in (world.finished_job, world.held_job, world.queued_job):
            for path in ("", "/result", "/logs", "/logs/stream"):
                response = b.get(f"/jobs/{job_id}{path}")
                assert response.status_code == 404, (job_id, path, response.text)
                assert "alice" not in response.text
        # bob cancels: by id refused, by alice's group nothing; alice's job stays queued
        refused = b.post("/jobs/cancel", json={"job_ids": [world.queued_job]})
        assert refused.status_code == 404
        by_group = b.post("/jobs/cancel", json={"group": ALICE_GROUP})
        assert by_group.status_code == 200
        assert by_group.json()["cancelled"] == []
        mixed = b.post("/jobs/cancel", json={"job_ids": [world.queued_job, world.bob_job]})
        assert mixed.status_code == 404  # all or nothing: bob's own job is not cancelled
        # bob may not make his jobs wait for, or take the results of, alice's
        for spec in (job(after=[world.finished_job]),
                     job(after=[world.finished_job], inputs=[world.finished_job])):  # fmt: skip
            assert b.post("/jobs", json={"jobs": [spec]}).status_code == 422
        # alice's own view: her job untouched, her result and log line hers alone
        assert a.get(f"/jobs/{world.queued_job}").json()["state"] == "queued"
        assert a.get(f"/jobs/{world.finished_job}/result").content == b"alice's result"
        lines = a.get(f"/jobs/{world.finished_job}/logs").json()["lines"]
        assert [line["text"] for line in lines] == ["alice's private log line"]
        assert b.get(f"/jobs/{world.bob_job}").json()["state"] == "queued"


def _stream_until(world: World, token: str | None, marker: int) -> list[int]:
    """Job ids of every event on the caller's stream from the start, read until the marker
    job's cancellation arrives (after which nothing older can come)."""
    seen: list[int] = []
    with world.http(token) as http, http.stream("GET", "/events", params={"since": 0}) as stream:
        assert stream.status_code == 200
        for event, data in sse_events(stream):
            if event != "jobs":
                continue
            batch = json.loads(data)["events"]
            seen += [e["job_id"] for e in batch]
            if any(e["job_id"] == marker and e["state"] == "cancelled" for e in batch):
                return seen
    raise AssertionError("the event stream ended before the marker job's cancellation")


@pytest.mark.parametrize("kind", KINDS)
def test_event_streams_carry_only_the_callers_jobs(world: World, kind: str) -> None:
    # fresh events on both sides, alice's first, so a leak would show before bob's marker
    alice, bob = world.tokens[f"alice-{kind}"], world.tokens[f"bob-{kind}"]
    markers = {}
    for user, token in (("alice", alice), ("bob", bob)):
        (markers[user],) = submit(world.gateway, str(token), job(name=f"{user}-marker"))
        with world.http(token) as http:
            assert http.post("/jobs/cancel", json={"job_ids": [markers[user]]}).is_success
    owners = world.owners()
    for user, token in (("alice", alice), ("bob", bob)):
        seen = set(_stream_until(world, token, markers[user]))
        strangers = sorted(i for i in seen if owners.get(i) != user)
        assert not strangers, f"{user}'s event stream carries others' jobs: {strangers}"
        assert markers[user] in seen
    assert world.finished_job in set(_stream_until(world, alice, markers["alice"]))


def test_pilots_touch_only_the_jobs_they_hold(world: World) -> None:
    pilot = f"/pilots/{world.pilot_id}"
    with world.http(world.tokens["pilot"]) as http:
        # log lines or results for a job it does not hold (alice's finished one): refused
        line = {"job_id": world.finished_job, "attempt": 1, "stream": "stdout", "time": 2.0,
                "text": "injected"}  # fmt: skip
        assert http.post(f"{pilot}/report", json={"logs": [line]}).status_code == 409
        upload = http.put(
            f"{pilot}/jobs/{world.finished_job}/result", params={"attempt": 1}, content=b"x"
        )
        assert upload.status_code == 409
        assert http.get(f"{pilot}/jobs/{world.queued_job}/payload").status_code == 409
        # a held job's inputs are its parents only
        inputs = f"{pilot}/jobs/{world.held_job}/inputs"
        assert http.get(f"{inputs}/{world.queued_job}").status_code == 404
        assert http.get(f"{inputs}/{world.finished_job}").content == b"alice's result"
    with world.http(world.tokens["alice-farside"]) as alice:
        lines = alice.get(f"/jobs/{world.finished_job}/logs").json()["lines"]
        assert "injected" not in [line["text"] for line in lines]
        assert alice.get(f"/jobs/{world.finished_job}/result").content == b"alice's result"


def test_a_farside_token_stops_working_at_its_expiry(world: World) -> None:
    """Even just after a lookup, which the gateway remembers for a few seconds."""
    token = expiring_user_token(world.gateway, "carol", ttl=3)
    expiry = time.time() + 3
    with world.http(token) as http:
        assert http.get("/whoami").status_code == 200  # looked up and remembered
        wait_past_expiry(farside_expiry=expiry)
        refused = http.get("/whoami")
    assert refused.status_code == 401, refused.text
