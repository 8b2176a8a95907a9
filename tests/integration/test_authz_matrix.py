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
from typing import Any

import httpx
import pytest

from farside_protocol import API_PREFIX
from support.authz import (
    bearer,
    expiring_user_token,
    job,
    register_pilot,
    sse_events,
    submit,
    wait_past_expiry,
)
from support.authz_rows import PATH_VALUES, ROWS, Row
from support.authz_world import ALICE_GROUP, IDENTITIES, Identity, World

pytestmark = pytest.mark.integration
ERROR_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_request",
}


def _cell_params() -> list[Any]:
    params = []
    for row in ROWS:
        for identity in IDENTITIES:
            marks = []
            if identity.role in row.known_bugs:
                marks.append(pytest.mark.xfail(reason=row.known_bugs[identity.role], strict=True))
            params.append(
                pytest.param(row, identity, id=f"{row.endpoint}|{identity.key}", marks=marks)
            )
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
        "to ROWS in tests/authz_rows.py, saying which status every kind of caller gets"
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
        for spec in (
            job(after=[world.finished_job]),
            job(after=[world.finished_job], inputs=[world.finished_job]),
        ):
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
        line = {
            "job_id": world.finished_job,
            "attempt": 1,
            "stream": "stdout",
            "time": 2.0,
            "text": "injected",
        }
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
