"""User endpoints for jobs: submit, list, inspect, cancel, results and log pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from farside_protocol import InvalidRequest
from farside_protocol.models import (
    CancelRequest,
    CancelResponse,
    JobDetail,
    JobKind,
    JobList,
    LogPage,
    RetryRequest,
    RetryResponse,
    SubmitRequest,
    SubmitResponse,
)
from farside_protocol.states import JobState

from ..broker.match import check_runnable
from ..pool import queries
from ..pool.leases import request_debug
from ..pool.resubmit import retry_job, retry_spec
from ..pool.submit import NewJob, Submitter, cancel_jobs, submit_journalled
from ..runtime import Runtime
from .deps import RuntimeDep, UserDep

router = APIRouter(tags=["jobs"])
JSON = "application/json"


def json_response(model: BaseModel, status: int = 200) -> Response:
    # pydantic serialises straight to bytes; skipping FastAPI's re-validation is measurably
    # faster on the hot paths (bulk submit, acquire, report)
    return Response(model.model_dump_json(), status_code=status, media_type=JSON)


@router.post("/jobs", status_code=201, response_model=SubmitResponse)
async def submit(body: SubmitRequest, who: UserDep, rt: RuntimeDep) -> Response:
    """Submit up to 10,000 jobs at once; they are stored before this returns."""
    if any(spec.kind != "function" for spec in body.jobs):
        raise InvalidRequest(
            "only 'function' jobs can be submitted; Dask workers are leases the gateway makes "
            "for a cluster: use gw.new_cluster(...) and cluster.scale(n)"
        )
    check_runnable(rt.config.sites, body.jobs)
    placed: list[NewJob] = []
    blob_keys: list[str] = []
    try:
        for spec in body.jobs:
            size = len(spec.payload)
            if size > rt.config.inline_limit:
                key = rt.blobs.new_key("payloads")
                await rt.blobs.put(key, spec.payload)
                blob_keys.append(key)
                placed.append(NewJob(spec, None, key, size))
            else:
                placed.append(NewJob(spec, spec.payload, None, size))
        scouts = rt.config.scouts
        submitter = Submitter(
            who.name, who.share_group, scouts.threshold, scouts.count, who.workflow_id
        )
        ids, journalled = await rt.pool.write(lambda tx: submit_journalled(tx, submitter, placed))
        rt.metrics.submitted.inc(len(ids) - len(journalled))
    except BaseException:
        for key in blob_keys:  # nothing half-written: no orphan blobs either
            await rt.blobs.delete(key)
        raise
    # a call found in the journal keeps its first payload: the one sent now is not kept
    for blob, job_id in zip((job.payload_blob for job in placed), ids, strict=True):
        if blob is not None and job_id in journalled:
            await rt.blobs.delete(blob)
    return json_response(SubmitResponse(job_ids=ids, journalled=journalled), 201)


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    who: UserDep,
    rt: RuntimeDep,
    state: JobState | None = None,
    group: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    before_id: int | None = None,
    batch_id: Annotated[str | None, Query(max_length=200)] = None,
    kind: JobKind | None = None,
) -> Response:
    """Your jobs, newest first (admins: everyone's); ``batch_id``: those with an attempt on
    the pilot of that batch job; ``kind``: only functions or only Dask-worker leases."""
    jobs = await rt.db.read(
        queries.list_jobs,
        who.owner_filter,
        state.value if state else None,
        group,
        limit,
        before_id,
        batch_id,
        kind,
    )
    return json_response(JobList(jobs=jobs))


@router.get("/jobs/{job_id}", response_model=JobDetail)
async def job_detail(job_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """One job with its state history and attempts."""
    return json_response(await rt.db.read(queries.job_detail, job_id, who.owner_filter))


@router.post("/jobs/cancel", response_model=CancelResponse)
async def cancel(body: CancelRequest, who: UserDep, rt: RuntimeDep) -> Response:
    """Cancel queued or running jobs (by ids and/or group); final jobs are left alone."""
    ids = await rt.pool.write(
        lambda tx: cancel_jobs(tx, who.owner_filter, body.job_ids, body.group)
    )
    return json_response(CancelResponse(cancelled=ids))


@router.post("/jobs/{job_id}/retry", status_code=201, response_model=RetryResponse)
async def retry(job_id: int, body: RetryRequest, who: UserDep, rt: RuntimeDep) -> Response:
    """Run a job's call again as a new job with changed resources or sites; a job that has
    not ended is cancelled in the same transaction (kill and retry)."""
    new, owner, share_group = await rt.db.read(retry_spec, job_id, who.owner_filter, body)
    check_runnable(rt.config.sites, [new.spec])
    scouts = rt.config.scouts
    submitter = Submitter(owner, share_group, scouts.threshold, scouts.count)
    new_id, stopped = await rt.pool.write(
        lambda tx: retry_job(tx, job_id, who.owner_filter, submitter, new)
    )
    rt.metrics.submitted.inc()
    return json_response(RetryResponse(job_id=new_id, stopped=stopped), 201)


@router.post("/jobs/{job_id}/debug", status_code=202)
async def debug(job_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """Ask for a stack dump of a running job: its pilot signals the job's worker, whose
    threads' Python stacks reach the job's log (stderr) within a heartbeat."""
    await rt.pool.write(lambda tx: request_debug(tx, job_id, who.owner_filter))
    return Response(status_code=202)


@router.get(
    "/jobs/{job_id}/result",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def result(job_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """The pickled outcome of a finished or failed job (see farside_protocol.payload)."""
    inline, blob = await rt.db.read(queries.job_result, job_id, who.owner_filter)
    return await blob_response(rt, inline, blob)


async def blob_response(rt: Runtime, inline: bytes | None, blob: str | None) -> Response:
    """Bytes kept in the database, or streamed from the blob store (results of offloaded
    graphs' chunks may be gigabytes: the gateway never holds one whole in memory)."""
    if inline is not None:
        return Response(inline, media_type="application/octet-stream")
    key = blob or ""
    size = await rt.blobs.size(key)
    return StreamingResponse(
        rt.blobs.stream(key),
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )


@router.get("/jobs/{job_id}/logs", response_model=LogPage)
async def logs(
    job_id: int,
    who: UserDep,
    rt: RuntimeDep,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Log lines after sequence number ``since``; ``ended`` once the job is final."""
    page = await rt.db.read(queries.logs_since, job_id, who.owner_filter, since, limit)
    return json_response(page)
