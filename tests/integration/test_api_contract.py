"""Auth, bad input and the pilot contract, spoken over plain HTTP as any client would."""

from __future__ import annotations

import base64
import socket

import pytest

from farside_protocol.payload import dump_function, encode_call
from support.harness import GatewayProcess

pytestmark = pytest.mark.integration


def _payload() -> str:
    return base64.b64encode(encode_call(dump_function(abs), (-1,), {})).decode()


def _job(**fields: object) -> dict[str, object]:
    return {"payload": _payload(), "resources": {"memory": "100 MB"}, **fields}


def _error(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.fixture
def idle_gateway(make_gateway) -> GatewayProcess:  # type: ignore[no-untyped-def]
    """No pilots: jobs stay queued, so tests can play the pilot themselves."""
    return make_gateway(
        sites=[{"name": "local", "min_warm": 0, "max_pilots": 0, "cores": 2, "memory": "4 GiB"}],
        max_request_size=1024 * 1024,
    )


def _count_jobs(gw: GatewayProcess) -> int:
    with gw.http(gw.user_token) as http:
        return len(http.get("/jobs", params={"limit": 10000}).json()["jobs"])


def test_every_endpoint_needs_a_token(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http() as http:
        for method, path in [
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/jobs/1"),
            ("GET", "/events"),
            ("GET", "/whoami"),
            ("GET", "/sites"),
            ("POST", "/pilots"),
            ("POST", "/pilots/1/acquire"),
            ("POST", "/pilots/1/report"),
        ]:
            response = http.request(method, path)
            assert response.status_code == 401, (method, path)
            assert _error(response)["code"] == "unauthorized"
        bad = http.get("/whoami", headers={"Authorization": "Bearer fsu_not-a-token"})
        assert bad.status_code == 401


def test_users_see_and_touch_only_their_own_jobs(idle_gateway: GatewayProcess) -> None:
    alice = idle_gateway.make_user_token("alice")
    bob = idle_gateway.make_user_token("bob")
    with idle_gateway.http(alice) as a, idle_gateway.http(bob) as b:
        (job_id,) = a.post("/jobs", json={"jobs": [_job()]}).json()["job_ids"]
        assert b.get(f"/jobs/{job_id}").status_code == 404
        assert b.get(f"/jobs/{job_id}/logs").status_code == 404
        assert b.post("/jobs/cancel", json={"job_ids": [job_id]}).status_code == 404
        assert b.get("/jobs").json()["jobs"] == []
        assert [j["id"] for j in a.get("/jobs").json()["jobs"]] == [job_id]
        # bob may not name alice's job as a dependency either
        refused = b.post("/jobs", json={"jobs": [_job(after=[job_id])]})
        assert refused.status_code == 422
        # the platform's admin token sees everyone's jobs
    with idle_gateway.http(idle_gateway.user_token) as admin:
        assert job_id in [j["id"] for j in admin.get("/jobs").json()["jobs"]]


def test_bad_input_gets_clear_4xx_and_writes_nothing(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http(idle_gateway.user_token) as http:
        cases = [
            (b'{"jobs": [', 400, "not valid JSON"),
            ({"jobs": [_job(colour="blue")]}, 422, "colour: unknown field"),
            ({"jobs": [_job(resources={"cores": -2})]}, 422, "cores"),
            ({"jobs": [_job(resources={"cores": 100000})]}, 422, "cores"),
            ({"jobs": [_job(resources={"memory": "lots"})]}, 422, "cannot parse memory 'lots'"),
            ({"jobs": [_job(resources={"walltime": "soon"})]}, 422, "cannot parse walltime"),
            ({"jobs": [_job(resources={"walltime": "400d"})]}, 422, "walltime"),
            ({"jobs": [_job(payload="%%%")]}, 422, "base64"),
            ({"jobs": []}, 422, "jobs"),
            ({"jobs": [_job(resources={"cores": 3})]}, 422, "it needs 3 cores"),
            ({"jobs": [_job(), _job(after=[987654])]}, 422, "987654"),
            ({"jobs": [_job(sites=["nowhere"])]}, 422, "unknown site"),
        ]
        for body, status, words in cases:
            if isinstance(body, bytes):
                response = http.post(
                    "/jobs", content=body, headers={"content-type": "application/json"}
                )
            else:
                response = http.post("/jobs", json=body)
            assert response.status_code == status, (body, response.text)
            assert words in _error(response)["message"], response.text
        huge = {"jobs": [_job(payload=base64.b64encode(b"x" * 2_000_000).decode())]}
        response = http.post("/jobs", json=huge)
        assert response.status_code == 413
        assert _error(response)["code"] == "payload_too_large"
    assert _count_jobs(idle_gateway) == 0


def test_oversized_body_without_content_length_is_refused(idle_gateway: GatewayProcess) -> None:
    host, port = idle_gateway.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + idle_gateway.user_token.encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 65536
        for _ in range(20):  # 1.25 MiB in chunks, over the 1 MiB limit
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def _register(gw: GatewayProcess, http) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    body = {
        "site": "local",
        "cores": 2,
        "memory": "4 GiB",
        "hostname": "test",
        "pid": 1,
        "version": "test",
    }
    response = http.post("/pilots", json=body, headers={"Authorization": f"Bearer {gw.site_token}"})
    assert response.status_code == 201, response.text
    reg = response.json()
    return reg["pilot_id"], reg["token"]


def test_pilot_tokens_act_only_for_their_own_pilot(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http() as http:
        pilot_a, token_a = _register(idle_gateway, http)
        pilot_b, _ = _register(idle_gateway, http)
        auth = {"Authorization": f"Bearer {token_a}"}
        acquire = {"max_jobs": 1, "cores": 1, "memory": "1 GiB"}
        assert http.post(f"/pilots/{pilot_a}/acquire", json=acquire, headers=auth).is_success
        assert (
            http.post(f"/pilots/{pilot_b}/acquire", json=acquire, headers=auth).status_code == 403
        )
        assert http.get("/jobs", headers=auth).status_code == 403
        user = {"Authorization": f"Bearer {idle_gateway.user_token}"}
        assert (
            http.post(f"/pilots/{pilot_a}/acquire", json=acquire, headers=user).status_code == 403
        )
        site = {"Authorization": f"Bearer {idle_gateway.site_token}"}
        assert (
            http.post(f"/pilots/{pilot_a}/acquire", json=acquire, headers=site).status_code == 403
        )


def test_reporting_on_a_job_not_held_is_a_conflict(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http(idle_gateway.user_token) as user, idle_gateway.http() as http:
        job_ids = user.post("/jobs", json={"jobs": [_job(), _job()]}).json()["job_ids"]
        pilot_id, token = _register(idle_gateway, http)
        auth = {"Authorization": f"Bearer {token}"}
        got = http.post(
            f"/pilots/{pilot_id}/acquire",
            json={"max_jobs": 1, "cores": 1, "memory": "1 GiB"},
            headers=auth,
        ).json()["jobs"]
        assert [j["job_id"] for j in got] == [job_ids[0]]
        mine = {"job_id": job_ids[0], "attempt": 1, "state": "running", "time": 1.0}
        not_mine = {"job_id": job_ids[1], "attempt": 1, "state": "running", "time": 1.0}
        response = http.post(
            f"/pilots/{pilot_id}/report", json={"updates": [mine, not_mine]}, headers=auth
        )
        assert response.status_code == 409
        assert _error(response)["details"]["job_ids"] == [job_ids[1]]
        # atomic: the update about the held job was not applied either
        assert user.get(f"/jobs/{job_ids[0]}").json()["state"] == "assigned"
        ok = http.post(f"/pilots/{pilot_id}/report", json={"updates": [mine]}, headers=auth)
        assert ok.status_code == 200
        assert user.get(f"/jobs/{job_ids[0]}").json()["state"] == "running"


def test_a_report_sent_again_changes_nothing_more(idle_gateway: GatewayProcess) -> None:
    """A pilot resends a batch whose reply it never got (the gateway was killed after the
    commit): the repeat must not fail, or the pilot retries it, and everything after it,
    for its whole grace period."""
    with idle_gateway.http(idle_gateway.user_token) as user, idle_gateway.http() as http:
        (job_id,) = user.post("/jobs", json={"jobs": [_job()]}).json()["job_ids"]
        pilot_id, token = _register(idle_gateway, http)
        auth = {"Authorization": f"Bearer {token}"}
        acquire = {"max_jobs": 1, "cores": 1, "memory": "1 GiB"}
        http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth)
        running = {"updates": [{"job_id": job_id, "attempt": 1, "state": "running", "time": 1.0}]}
        for _ in range(2):
            response = http.post(f"/pilots/{pilot_id}/report", json=running, headers=auth)
            assert response.status_code == 200, response.text
        history = [h["state"] for h in user.get(f"/jobs/{job_id}").json()["history"]]
        assert history == ["queued", "assigned", "running"]
        done = {"job_id": job_id, "attempt": 1, "state": "finished", "time": 2.0, "exit_code": 0}
        ok = http.post(f"/pilots/{pilot_id}/report", json={"updates": [done]}, headers=auth)
        assert ok.status_code == 200
        # the ended job is no longer held: the repeat is a 409 naming it, which the pilot's
        # reporter answers by dropping it; the outcome stands
        again = http.post(f"/pilots/{pilot_id}/report", json={"updates": [done]}, headers=auth)
        assert again.status_code == 409
        assert _error(again)["details"]["job_ids"] == [job_id]
        assert user.get(f"/jobs/{job_id}").json()["state"] == "finished"


def test_dependencies_wait_and_failures_cascade(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http(idle_gateway.user_token) as user, idle_gateway.http() as http:
        (parent,) = user.post("/jobs", json={"jobs": [_job()]}).json()["job_ids"]
        child, other = user.post(
            "/jobs", json={"jobs": [_job(after=[parent]), _job(after=[parent])]}
        ).json()["job_ids"]
        (grandchild,) = user.post("/jobs", json={"jobs": [_job(after=[child])]}).json()["job_ids"]
        assert user.get(f"/jobs/{child}").json()["state"] == "pending"
        pilot_id, token = _register(idle_gateway, http)
        auth = {"Authorization": f"Bearer {token}"}
        acquire = {"max_jobs": 10, "cores": 1, "memory": "1 GiB"}
        got = http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth).json()
        assert [j["job_id"] for j in got["jobs"]] == [parent]  # children wait
        done = {"job_id": parent, "attempt": 1, "state": "finished", "time": 1.0, "exit_code": 0}
        http.post(f"/pilots/{pilot_id}/report", json={"updates": [done]}, headers=auth)
        assert user.get(f"/jobs/{child}").json()["state"] == "queued"
        got = http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth).json()
        assert sorted(j["job_id"] for j in got["jobs"]) == [child, other]
        failed = {
            "job_id": child,
            "attempt": 1,
            "state": "failed",
            "time": 2.0,
            "exit_code": 1,
            "error_class": "user",
            "error": "ValueError: no",
        }
        http.post(f"/pilots/{pilot_id}/report", json={"updates": [failed]}, headers=auth)
        detail = user.get(f"/jobs/{grandchild}").json()
        assert detail["state"] == "failed"
        assert detail["error_class"] == "dependency"
        assert f"dependency job {child}" in detail["error"]
        assert detail["after"] == [child]
        history = [h["state"] for h in user.get(f"/jobs/{child}").json()["history"]]
        assert history == ["pending", "queued", "assigned", "failed"]


def test_openapi_spec_is_served(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http() as http:
        spec = http.get("/../../openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]
    assert "/api/v1/pilots/{pilot_id}/acquire" in spec["paths"]


def test_acquire_respects_the_walltime_a_pilot_has_left(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http(idle_gateway.user_token) as user, idle_gateway.http() as http:
        (job_id,) = user.post(
            "/jobs", json={"jobs": [_job(resources={"memory": "100 MB", "walltime": "1h"})]}
        ).json()["job_ids"]
        shape = {"max_jobs": 5, "cores": 1, "memory": "1 GiB"}

        def acquire(**extra: object) -> tuple[list[int], bool]:
            pilot_id, token = _register(idle_gateway, http)
            auth = {"Authorization": f"Bearer {token}"}
            got = http.post(
                f"/pilots/{pilot_id}/acquire", json={**shape, **extra}, headers=auth
            ).json()
            return [j["job_id"] for j in got["jobs"]], got["retire"]

        # no time left: nothing, not everything; and a pilot too short for the work that
        # waits leaves, so that a fresh one can take it
        assert acquire(walltime_left=0) == ([], True)
        assert acquire(walltime_left=1800) == ([], True)  # the job needs an hour
        assert acquire(walltime_left=7200) == ([job_id], False)


def test_a_pilot_gives_back_jobs_it_has_not_started(idle_gateway: GatewayProcess) -> None:
    with idle_gateway.http(idle_gateway.user_token) as user, idle_gateway.http() as http:
        submitted = user.post("/jobs", json={"jobs": [_job(), _job(), _job()]})
        first, second, third = submitted.json()["job_ids"]
        pilot_id, token = _register(idle_gateway, http)
        auth = {"Authorization": f"Bearer {token}"}
        acquire = {"max_jobs": 3, "cores": 1, "memory": "1 GiB"}
        got = http.post(f"/pilots/{pilot_id}/acquire", json=acquire, headers=auth).json()
        assert [j["job_id"] for j in got["jobs"]] == [first, second, third]
        running = {"updates": [{"job_id": first, "attempt": 1, "state": "running", "time": 1.0}]}
        http.post(f"/pilots/{pilot_id}/report", json=running, headers=auth)
        body = {"job_ids": [first, second, third], "reason": "it waited too long"}
        answer = http.post(f"/pilots/{pilot_id}/release", json=body, headers=auth)
        assert answer.status_code == 200, answer.text
        # a started job is not given back; the others are queued as if never taken
        assert answer.json() == {"released": [second, third]}
        assert user.get(f"/jobs/{first}").json()["state"] == "running"
        detail = user.get(f"/jobs/{second}").json()
        assert (detail["state"], detail["attempts"]) == ("queued", 0)
        assert detail["history"][-1]["state"] == "queued"
        assert "given back unstarted by pilot" in detail["history"][-1]["reason"]
        # another pilot takes them, as first attempts
        other_id, other_token = _register(idle_gateway, http)
        other = {"Authorization": f"Bearer {other_token}"}
        got = http.post(f"/pilots/{other_id}/acquire", json=acquire, headers=other).json()
        assert [(j["job_id"], j["attempt"]) for j in got["jobs"]] == [(second, 1), (third, 1)]
        # jobs held by another pilot are not this pilot's to give back
        answer = http.post(f"/pilots/{pilot_id}/release", json=body, headers=auth)
        assert answer.json() == {"released": []}
        bad = http.post(f"/pilots/{pilot_id}/release", json={"job_ids": []}, headers=auth)
        assert bad.status_code == 422
