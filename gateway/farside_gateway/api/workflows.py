"""User endpoints for workflow runs: start, list, inspect, pause, resume, kill, retry, and
the body's progress reports (see :mod:`farside_gateway.pool.workflows`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from farside_protocol import Forbidden
from farside_protocol.workflows import (
    WorkflowInfo,
    WorkflowList,
    WorkflowReport,
    WorkflowSpec,
    WorkflowStarted,
)

from ..broker.match import check_runnable
from ..pool import workflows as runs
from ..pool.submit import NewJob, Submitter
from .deps import RuntimeDep, UserDep
from .jobs import json_response

router = APIRouter(tags=["workflows"])


@router.post("/workflows", status_code=201, response_model=WorkflowStarted)
async def start(body: WorkflowSpec, who: UserDep, rt: RuntimeDep) -> Response:
    """Start a workflow run: its body is queued as a job of kind ``workflow``."""
    spec = runs.body_spec(body)
    check_runnable(rt.config.sites, [spec])
    size = len(body.payload)
    key = None
    if size > rt.config.inline_limit:
        key = rt.blobs.new_key("payloads")
        await rt.blobs.put(key, body.payload)
    new = NewJob(spec, None if key else body.payload, key, size)
    submitter = Submitter(who.name, who.share_group)
    try:
        started = await rt.pool.write(lambda tx: runs.start_workflow(tx, submitter, body.name, new))
    except BaseException:
        if key is not None:
            await rt.blobs.delete(key)
        raise
    rt.metrics.submitted.inc()
    return json_response(started, 201)


@router.get("/workflows", response_model=WorkflowList)
async def list_runs(
    who: UserDep,
    rt: RuntimeDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Your workflow runs, newest first (admins: everyone's); ``name``: one workflow's."""
    found = await rt.db.read(runs.list_workflows, who.owner_filter, name, limit)
    return json_response(WorkflowList(workflows=found))


@router.get("/workflows/{workflow_id}", response_model=WorkflowInfo)
async def detail(workflow_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """One run: its state, body job, children by state and the body's last report."""
    return json_response(await rt.db.read(runs.workflow_info, workflow_id, who.owner_filter))


@router.post("/workflows/{workflow_id}/pause", response_model=WorkflowInfo)
async def pause(workflow_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """Stop the body; children keep running, and their results wait in the journal."""
    info = await rt.pool.write(lambda tx: runs.pause_workflow(tx, workflow_id, who.owner_filter))
    rt.tokens.forget_workflow(workflow_id)
    return json_response(info)


@router.post("/workflows/{workflow_id}/resume", response_model=WorkflowInfo)
async def resume(workflow_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """Start a paused run's body again; calls it made before return from the journal."""
    return json_response(
        await rt.pool.write(lambda tx: runs.resume_workflow(tx, workflow_id, who.owner_filter))
    )


@router.post("/workflows/{workflow_id}/kill", response_model=WorkflowInfo)
async def kill(workflow_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """Cancel the body and every child that has not ended."""
    info = await rt.pool.write(lambda tx: runs.kill_workflow(tx, workflow_id, who.owner_filter))
    rt.tokens.forget_workflow(workflow_id)
    return json_response(info)


@router.post("/workflows/{workflow_id}/retry", response_model=WorkflowInfo)
async def retry(workflow_id: int, who: UserDep, rt: RuntimeDep) -> Response:
    """Run a failed or killed run's body again: finished children return from the journal,
    failed and cancelled ones run again."""
    return json_response(
        await rt.pool.write(lambda tx: runs.retry_workflow(tx, workflow_id, who.owner_filter))
    )


@router.post("/workflows/{workflow_id}/report", status_code=204)
async def report(workflow_id: int, body: WorkflowReport, who: UserDep, rt: RuntimeDep) -> Response:
    """The body tells how far it is (``farside.report(...)``); only its own token may."""
    if who.workflow_id != workflow_id:
        raise Forbidden(
            f"only the body of workflow run {workflow_id} reports its progress; call "
            "farside.report(...) inside the @farside.workflow function"
        )
    await rt.pool.write(lambda tx: runs.record_report(tx, workflow_id, who.name, body.values))
    return Response(status_code=204)
