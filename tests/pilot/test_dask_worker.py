"""A Dask-worker lease on the pilot side, without a gateway: what a worker that cannot
join says, and that a worker joins and leaves with its scheduler."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from distributed import Scheduler
from distributed.security import Security

from farside_pilot.dask_worker import DaskWorkerError, serve
from farside_protocol.clusters import DaskWorkerLease


def _lease(address: str, security: Security, **extra: object) -> bytes:
    lease = DaskWorkerLease(
        cluster="c1",
        group="default",
        name="default-abc",
        scheduler_address=address,
        tls_cert=str(security.tls_ca_file),
        tls_key=str(security.tls_client_key),
        nthreads=1,
        memory_limit=512 * 1024**2,
        **extra,  # type: ignore[arg-type]
    )
    return lease.model_dump_json().encode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_that_cannot_reach_its_scheduler_says_where_it_tried(tmp_path) -> None:  # type: ignore[no-untyped-def]
    address = f"tls://127.0.0.1:{_closed_port()}"
    with pytest.raises(DaskWorkerError, match=rf"could not reach its scheduler at {address}"):
        serve(_lease(address, Security.temporary(), death_timeout=1.0), str(tmp_path))


def test_the_worker_joins_with_the_leases_name_and_resources_and_ends_with_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    security = Security.temporary()
    joined: dict[str, object] = {}
    ready = threading.Event()

    async def scheduler_side() -> None:
        sec = Security(
            tls_ca_file=security.tls_ca_file,
            tls_scheduler_cert=security.tls_ca_file,
            tls_scheduler_key=security.tls_client_key,
            require_encryption=True,
        )
        async with Scheduler(
            host="127.0.0.1", port=0, protocol="tls", security=sec, dashboard=False
        ) as scheduler:
            joined["address"] = scheduler.address
            ready.set()
            while not scheduler.workers:  # noqa: ASYNC110 - the scheduler offers no event
                await asyncio.sleep(0.05)
            (ws,) = scheduler.workers.values()
            joined.update(name=ws.name, resources=dict(ws.resources), nthreads=ws.nthreads)
            await scheduler.retire_workers(names=[ws.name], close_workers=True, remove=True)

    thread = threading.Thread(target=asyncio.run, args=(scheduler_side(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    lease = _lease(str(joined["address"]), security, resources={"GPU": 1.0})
    serve(lease, str(tmp_path))  # returns once the scheduler retired it
    thread.join(30)
    assert joined == {
        "address": joined["address"],
        "name": "default-abc",
        "resources": {"GPU": 1.0},
        "nthreads": 1,
    }
