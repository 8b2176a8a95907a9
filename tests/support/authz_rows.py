"""The authorization matrix's rows: for every endpoint of the API, the one status each
kind of caller gets (``tests/integration/test_authz_matrix.py`` runs them against a real
gateway, and fails for an endpoint without a row here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from support.authz import job


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
    return {
        "alice": owner,
        "bob": other,
        "admin": admin,
        "pilot": 403,
        "other_pilot": 403,
        "site": 403,
        "other_site": 403,
        "anon": 401,
        "hub": 403,
        **rest,
    }


def _pilot(status: int) -> dict[str, int]:
    """An endpoint for one pilot's own token: every other token gets 403."""
    return {
        "alice": 403,
        "bob": 403,
        "admin": 403,
        "pilot": status,
        "other_pilot": 403,
        "site": 403,
        "other_site": 403,
        "anon": 401,
        "hub": 403,
    }


def _any(status: int) -> dict[str, int]:
    roles = ("alice", "bob", "admin", "pilot", "other_pilot", "site", "other_site")
    return {role: status for role in roles} | {"anon": 401, "hub": 403}


ACQUIRE = {"max_jobs": 1, "cores": 1, "memory": "1 MiB", "wait": 0}  # nothing queued fits
REGISTRATION = {
    "site": "local",
    "cores": 1,
    "memory": "1 GiB",
    "hostname": "matrix",
    "pid": 1,
    "version": "test",
}

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
    Row("GET", "/clusters/{name}/logs", _user(200, 404, 200), values={"name": "cluster"}),
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
    # probes: open to all, whatever the token
    Row("GET", "/health", _any(200) | {"anon": 200, "hub": 200}),
]
