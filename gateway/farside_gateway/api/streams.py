"""Server-sent event streams: job events for a user, and a job's log lines.

Both resume where a client left off (``Last-Event-ID`` or ``since``), because both are
read from the database; a client that lost its connection to a restarting gateway misses
nothing. Wake-ups come from the notifier; a quiet stream sends a comment every 15 s so
proxies keep it open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from farside_protocol.models import EventBatch

from ..notify import wait_for_signal
from ..pool import queries
from ..runtime import Runtime
from .deps import RuntimeDep, UserDep

router = APIRouter(tags=["streams"])
KEEPALIVE = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _resume_point(last_event_id: str | None, since: int | None) -> int | None:
    if last_event_id and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return since


@router.get("/events", response_class=StreamingResponse)
async def events(
    who: UserDep,
    rt: RuntimeDep,
    since: Annotated[int | None, Query(ge=0)] = None,
    terminal_only: bool = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Your jobs' state changes as ``text/event-stream``.

    First an ``event: hello`` with ``{"head": seq}`` (where the stream starts), then
    ``event: jobs`` messages whose data is an EventBatch and whose ``id`` is the sequence
    number to resume from.
    """
    start = _resume_point(last_event_id, since)
    if start is None:
        start = await rt.db.read(queries.event_head)
    return StreamingResponse(
        _event_stream(rt, who.name, start, terminal_only),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _event_stream(
    rt: Runtime, owner: str, cursor: int, terminal_only: bool
) -> AsyncIterator[str]:
    yield f"event: hello\ndata: {json.dumps({'head': cursor})}\n\n"
    while not rt.stopping.is_set():
        waiter = rt.notifier.events.waiter(owner)
        batch, scanned = await rt.db.read(
            queries.events_since, owner, cursor, terminal_only, rt.config.event_result_limit
        )
        if scanned != cursor:
            cursor = scanned
            if batch:
                data = EventBatch(events=batch).model_dump_json()
                yield f"id: {cursor}\nevent: jobs\ndata: {data}\n\n"
            continue
        if not await wait_for_signal(waiter, KEEPALIVE):
            yield ": ping\n\n"


@router.get("/jobs/{job_id}/logs/stream", response_class=StreamingResponse)
async def log_stream(
    job_id: int,
    who: UserDep,
    rt: RuntimeDep,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """A job's log lines as they arrive (``event: logs``, data a LogPage); ends with the job."""
    start = _resume_point(last_event_id, since) or 0
    # fail fast (404) before the stream starts
    await rt.db.read(queries.logs_since, job_id, who.owner_filter, start, 1)
    return StreamingResponse(
        _log_stream(rt, job_id, who.owner_filter, start),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _log_stream(
    rt: Runtime, job_id: int, owner: str | None, cursor: int
) -> AsyncIterator[str]:
    while not rt.stopping.is_set():
        waiter = rt.notifier.logs.waiter(job_id)
        page = await rt.db.read(queries.logs_since, job_id, owner, cursor, 5000)
        if page.lines or page.ended:
            cursor = page.next_seq
            yield f"id: {cursor}\nevent: logs\ndata: {page.model_dump_json()}\n\n"
            if page.ended:
                return
            continue
        if not await wait_for_signal(waiter, KEEPALIVE):
            yield ": ping\n\n"
