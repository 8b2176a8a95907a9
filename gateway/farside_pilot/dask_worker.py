"""Runs a Dask worker for a ``dask-worker`` lease, inside a pilot's worker process.

The pilot treats the lease like any job: its output streams as the job's log, its memory
and walltime are watched, cancelling it kills the worker. The worker joins its cluster's
scheduler over TLS with the cluster's certificate (the same one the scheduler and the
client present), offers the lease's cores as threads and its memory as the Dask memory
limit, and carries the Dask resource ``GPU`` when the lease has GPUs, so that
``client.submit(f, resources={"GPU": 1})`` lands on it.

The lease ends when the worker closes: retired by the scheduler (scale down, adapt), the
scheduler gone for longer than ``death_timeout``, or its ``lifetime`` reached. A worker
that cannot reach its scheduler at all fails the job with the address it tried.
"""

from __future__ import annotations

import asyncio
import logging
import os

from farside_protocol.clusters import DaskWorkerLease
from farside_protocol.env import DASK_HOST


class DaskWorkerError(RuntimeError):
    """The Dask worker could not join or run; the message says what it tried."""


def serve(payload: bytes, scratch: str) -> None:
    """Run the lease's Dask worker until it closes."""
    lease = DaskWorkerLease.model_validate_json(payload)
    asyncio.run(_run(lease, scratch))


async def _run(lease: DaskWorkerLease, scratch: str) -> None:
    from distributed import Worker
    from distributed.security import Security

    # the worker's own log lines go to stderr, which the pilot streams as the job's log
    logging.getLogger("distributed").setLevel(logging.INFO)
    security = Security(
        tls_ca_file=lease.tls_cert,
        tls_worker_cert=lease.tls_cert,
        tls_worker_key=lease.tls_key,
        require_encryption=True,
    )
    worker = Worker(
        lease.scheduler_address,
        name=lease.name,
        nthreads=lease.nthreads,
        memory_limit=lease.memory_limit or "auto",
        resources=lease.resources or None,
        security=security,
        host=os.environ.get(DASK_HOST) or None,
        local_directory=os.path.join(scratch, "dask-worker-space"),
        death_timeout=lease.death_timeout,
        lifetime=lease.lifetime,
        lifetime_restart=False,
        # the scheduler's dashboard shows every worker; one per worker would cost a port
        # and bokeh's start-up on each pilot
        dashboard=False,
    )
    try:
        await worker
    except (TimeoutError, OSError) as exc:
        raise DaskWorkerError(
            f"the Dask worker could not reach its scheduler at {lease.scheduler_address} "
            f"within {lease.death_timeout:g}s ({exc}); the cluster {lease.cluster!r} may have "
            "stopped, or this site has no route to the gateway's scheduler port"
        ) from exc
    print(
        f"farside: Dask worker {lease.name} of cluster {lease.cluster} ({lease.group}) "
        f"joined {lease.scheduler_address} from {worker.address}",
        flush=True,
    )
    await worker.finished()
    print(f"farside: Dask worker {lease.name} closed: {worker.status.name}", flush=True)
