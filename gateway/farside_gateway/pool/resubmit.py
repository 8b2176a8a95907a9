"""Retrying a job with changed options: the same call as a new job, with other resources
or sites (PanDA's retry from the monitor). A job that has not ended is cancelled first, so
the two never both run; the new job names the old one in its first state change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from farside_protocol import InvalidRequest, NotFound
from farside_protocol.models import JobSpec, Resources, RetryRequest

from ..db.schema import job_deps, jobs
from .submit import NewJob, Submitter, cancel_jobs, submit_jobs
from .transaction import PoolTransaction


def retry_spec(
    conn: Connection, job_id: int, owner: str | None, change: RetryRequest
) -> tuple[NewJob, str, str | None]:
    """The new job's spec (the old job's call and options, with ``change`` applied), and
    the old job's owner and fair-share group, which the new job keeps (also when an admin
    retries it)."""
    query = select(jobs).where(jobs.c.id == job_id)
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no job {job_id} of yours")
    if row.kind != "function":
        raise InvalidRequest(
            f"job {job_id} is a Dask worker lease: scale its cluster instead of retrying it"
        )
    parents = conn.execute(
        select(job_deps.c.parent_id, job_deps.c.input).where(job_deps.c.child_id == job_id)
    ).all()
    resources: dict[str, Any] = {
        "cores": row.cores,
        "memory": row.memory,
        "walltime": row.walltime,
        "gpus": row.gpus,
        "gpu_model": row.gpu_model,
        "arch": row.arch,
    }
    resources.update(
        change.model_dump(include={"cores", "memory", "walltime", "gpus"}, exclude_none=True)
    )
    sites = change.sites if change.sites is not None else _listed(row.site_order)
    spec = JobSpec(
        payload=b"",  # the stored payload is reused as it is (inline or blob)
        name=row.name,
        group=row.group_name,
        resources=Resources(**resources),
        max_attempts=row.max_attempts,
        priority=row.priority,
        after=sorted(p.parent_id for p in parents),
        inputs=[int(i) for i in (row.inputs or "").split(",") if i],
        sites=sites,
        env=row.env,
    )
    new = NewJob(spec, row.payload, row.payload_blob, row.payload_size)
    return new, str(row.owner), row.share_group


def retry_job(
    tx: PoolTransaction, job_id: int, owner: str | None, submitter: Submitter, new: NewJob
) -> tuple[int, bool]:
    """Submit ``new``, then cancel ``job_id`` if it has not ended (in one transaction, so
    the two never both run); returns (new id, whether the old job was stopped)."""
    (new_id,) = submit_jobs(tx, submitter, [new])
    reason = f"retried with changed options as job {new_id}"
    stopped = bool(cancel_jobs(tx, owner, [job_id], None, reason=reason))
    return new_id, stopped


def _listed(text: str | None) -> list[str]:
    return [s for s in (text or "").split(",") if s]
