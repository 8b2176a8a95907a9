"""The gateway's Prometheus metrics, scraped while work runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import farside
from support.harness import GatewayProcess, wait_until

pytestmark = pytest.mark.integration


def _scrape(gateway: GatewayProcess, token: str) -> dict[str, list[Any]]:
    answer = httpx.get(
        f"{gateway.url}/api/v1/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def _value(samples: list[Any], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_metrics_follow_a_map(gateway: GatewayProcess, client: farside.Gateway) -> None:
    admin = gateway.make_user_token("operator", admin=True)
    before = _scrape(gateway, admin)
    assert _value(before["farside_jobs_submitted"], "farside_jobs_submitted_total") == 0

    @farside.task(gateway=client, memory="100 MB")
    def double(x: int) -> int:
        return 2 * x

    assert list(double.map(range(30))) == [2 * x for x in range(30)]
    wait_until(
        lambda: (
            _value(_scrape(gateway, admin)["farside_jobs"], "farside_jobs", state="finished") == 30
        )
    )
    after = _scrape(gateway, admin)
    assert _value(after["farside_jobs_submitted"], "farside_jobs_submitted_total") == 30
    assert _value(after["farside_jobs"], "farside_jobs", state="finished", site="local") == 30
    assert _value(after["farside_jobs_assigned"], "farside_jobs_assigned_total", site="local") >= 30
    acquires = after["farside_pilot_acquire_duration_seconds"]
    assert _value(acquires, "farside_pilot_acquire_duration_seconds_count", outcome="jobs") >= 1
    assert _value(after["farside_pilots"], "farside_pilots", site="local", state="running") >= 1
    requests = after["farside_http_request_duration_seconds"]
    assert (
        _value(
            requests,
            "farside_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/jobs",
            status="201",
        )
        >= 1
    )
    # the route template, not each job's path: labels stay few
    routes = {s.labels["route"] for s in requests}
    assert "/api/v1/pilots/{pilot_id}/acquire" in routes
    assert not [r for r in routes if any(ch.isdigit() for ch in r.replace("v1", ""))]
    db = after["farside_db_transaction_duration_seconds"]
    assert _value(db, "farside_db_transaction_duration_seconds_count", kind="write") > 0
    # the client's event stream is open while it waits for results
    assert _value(after["farside_event_streams"], "farside_event_streams", stream="events") >= 1


def test_metrics_are_for_admins(gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/api/v1/metrics"
    assert httpx.get(url).status_code == 401
    user = {"Authorization": f"Bearer {gateway.user_token}"}
    # the local platform's user token is an admin's; another user's is not
    other = {"Authorization": f"Bearer {gateway.make_user_token('bob')}"}
    assert httpx.get(url, headers=other).status_code == 403
    assert httpx.get(url, headers=user).status_code == 200
