"""Two gateway replicas on one PostgreSQL database wake each other's waiters at once
(LISTEN/NOTIFY), not at their next timeout."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farside_protocol.payload import dump_function, encode_call
from support.authz import sse_events
from support.harness import GatewayProcess, postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

IDLE = {"sites": [{"name": "local", "min_warm": 0, "max_pilots": 0}]}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:

    for url in postgres_database():
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


def squared_slowly(i: int) -> int:
    import time

    time.sleep(0.02)
    return i * i


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_replica_killed_under_load_loses_no_job_and_no_result(tmp_path: Path) -> None:
    """Two replicas behind one front (as behind a Service); pilots and the client use only
    the front. One replica is SIGKILLed while jobs run: every job still ends, once, with
    its result, and the client's result stream carries on through the other replica."""
    import sqlalchemy

    import farside
    from support.harness import batch_pilots, free_port, wait_until
    from support.tcp_proxy import TcpFront

    n = 400
    settings = {
        "sites": [{"name": "local", "min_warm": 0, "max_pilots": 0}],
        "heartbeat_interval": 1.0,
        "heartbeat_timeout": 10.0,
    }
    for url in postgres_database():
        ports = free_port(), free_port()
        front = TcpFront([("127.0.0.1", port) for port in ports]).start()
        first = GatewayProcess(tmp_path / "a", url, public_url=front.url, **settings)
        second = GatewayProcess(tmp_path / "b", url, public_url=front.url, **settings)
        try:
            first.start(port=ports[0])
            second.start(port=ports[1])
            pilot_options = ("--site", "local", "--cores", "2", "--idle-timeout", "120")
            with (
                batch_pilots(front.url, first.site_token, 2, tmp_path, *pilot_options),
                farside.Gateway(front.url, token=first.user_token, set_as_default=False) as gw,
            ):
                results = gw.map(squared_slowly, range(n))
                engine = sqlalchemy.create_engine(url)

                def finished(engine: sqlalchemy.Engine = engine) -> int:
                    with engine.connect() as conn:
                        query = "select count(*) from jobs where state = 'finished'"
                        return int(conn.execute(sqlalchemy.text(query)).scalar_one())

                wait_until(lambda: finished() >= n // 4, timeout=120, interval=0.1)
                first.kill()  # mid-load: leases held, reports in flight, streams open
                assert finished() < n, "the load ended before the replica was killed"
                assert list(results) == [i * i for i in range(n)]
                with engine.connect() as conn:
                    rows = conn.execute(
                        sqlalchemy.text("select state, count(*) from jobs group by state")
                    ).all()
                engine.dispose()
                assert dict(rows) == {"finished": n}
        finally:
            first.cleanup()
            second.cleanup()
            front.close()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Any]:
    """A migrated, empty PostgreSQL pool (farside_gateway.db.Database)."""
    from farside_gateway.db import Database

    for url in postgres_database():
        db = Database(url)
        try:
            db.migrate()
            yield db
        finally:
            db.close()


async def test_only_the_leading_replica_provisions(pool: Any, tmp_path: Path) -> None:
    """The live replica with the smallest name leads; a gone one leads no more; only the
    leader's provisioner passes act (two replicas planning one queue would both submit
    the pilots it needs)."""
    from farside_gateway import replicas
    from farside_gateway.config import GatewayConfig
    from farside_gateway.notify import Notifier
    from farside_gateway.pool.outcomes import LeasePolicy
    from farside_gateway.pool.transaction import Pool
    from farside_gateway.provision import Provisioner
    from farside_gateway.sites.statuses import SiteStatuses

    config = GatewayConfig(state_dir=tmp_path, clusters={"adopt_after": 15.0})
    now = 1000.0
    pool.run_sync(replicas.beat, "host:/b", now)
    pool.run_sync(replicas.beat, "host:/a", now - 30)  # not seen for 30 s: gone
    pool.run_sync(replicas.beat, "host:/c", now - 1)

    def leading(instance: str) -> Any:
        provisioner = Provisioner(
            config,
            Pool(pool, Notifier(), lambda: now),
            {},
            SiteStatuses(config.sites),
            LeasePolicy(lease_timeout=30.0, max_system_attempts=3),
            instance=instance,
        )
        return provisioner._leading()

    assert pool.run_sync(replicas.leader, now - 15) == "host:/b"
    assert await leading("host:/b")
    assert not await leading("host:/c")
    assert not await leading("host:/a")
    # the leader stops cleanly: the next one leads at once
    pool.run_sync(replicas.forget, "host:/b")
    assert await leading("host:/c")
