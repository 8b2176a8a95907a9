"""Two gateway replicas on one PostgreSQL database wake each other's waiters at once
(LISTEN/NOTIFY), not at their next timeout."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authz_support import sse_events
from farside_protocol.payload import dump_function, encode_call
from harness import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

IDLE = {"sites": [{"name": "local", "min_warm": 0, "max_pilots": 0}]}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    from conftest import _postgres_database

    for url in _postgres_database():
        first = GatewayProcess(tmp_path / "a", url, **IDLE).start()
        second = GatewayProcess(tmp_path / "b", url, **IDLE).start()
        try:
            yield first, second
        finally:
            first.cleanup()
            second.cleanup()


def _job() -> dict[str, object]:
    payload = base64.b64encode(encode_call(dump_function(abs), (-1,), {})).decode()
    return {"payload": payload, "resources": {"memory": "100 MB"}}


def test_a_job_submitted_on_one_replica_reaches_a_stream_on_the_other_at_once(
    replicas: tuple[GatewayProcess, GatewayProcess],
) -> None:
    first, second = replicas
    token = first.user_token  # both replicas read tokens from the one database
    auth = {"Authorization": f"Bearer {token}"}
    arrived: list[tuple[float, dict[str, object]]] = []
    listening = threading.Event()

    def follow() -> None:
        with (
            httpx.Client(timeout=60) as http,
            http.stream("GET", f"{second.url}/api/v1/events", headers=auth) as stream,
        ):
            for event, data in sse_events(stream):
                if event == "hello":
                    listening.set()
                elif event == "jobs":
                    arrived.append((time.monotonic(), json.loads(data)))
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert listening.wait(30)
    time.sleep(0.5)  # the stream is waiting now, for up to its 15 s keep-alive
    sent = time.monotonic()
    answer = httpx.post(f"{first.url}/api/v1/jobs", json={"jobs": [_job()]}, headers=auth)
    assert answer.status_code == 201, answer.text
    (job_id,) = answer.json()["job_ids"]
    reader.join(timeout=14)  # under the keep-alive: only a wake-up from the other replica
    assert arrived, "the stream on the other replica was not woken"
    when, batch = arrived[0]
    assert [e["job_id"] for e in batch["events"]] == [job_id]
    assert when - sent < 14
