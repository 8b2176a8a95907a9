"""Pilot endpoints: register, acquire (long-poll), heartbeat (long-poll), release, report,
exit, and the raw bodies of held jobs: payload and inputs down, result up."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from farside_protocol import Conflict, InvalidRequest, PayloadTooLarge, PilotState, SiteStatus
from farside_protocol.errors import result_too_large
from farside_protocol.models import Resources
from farside_protocol.pilot_api import (
    AcquireRequest,
    AcquireResponse,
    Assignment,
    HeartbeatRequest,
    HeartbeatResponse,
    PilotExit,
    PilotRegistered,
    PilotRegistration,
    ReleaseRequest,
    ReleaseResponse,
    ReportRequest,
    ReportResponse,
)

from ..blobs import BlobTooLarge
from ..broker.match import needs_longer_slot
from ..clusters.sealing import SealError
from ..config import SiteConfig
from ..db.schema import AnyRow
from ..notify import wait_for_signal
from ..pool import pilots as pilot_records
from ..pool import queries
from ..pool import workflows as workflow_runs
from ..pool.acquire import PilotSlot, acquire, release_unstarted
from ..pool.heartbeats import BEATING
from ..pool.leases import give_back, held_jobs, report
from ..pool.outcomes import PreparedUpdate
from ..pool.retries import release_pilot
from ..pool.transaction import PoolTransaction
from ..pool.workflows import BODY
from ..runtime import Runtime
from .deps import PrincipalDep, RuntimeDep, pilot_of
from .jobs import blob_response, json_response

log = logging.getLogger(__name__)

router = APIRouter(prefix="/pilots", tags=["pilots"])


@router.post("", status_code=201, response_model=PilotRegistered)
async def register(body: PilotRegistration, who: PrincipalDep, rt: RuntimeDep) -> Response:
    """Register a pilot's slot (site or one-pilot token); returns the pilot's own token."""
    if rt.config.site(body.site) is None:
        raise InvalidRequest(f"unknown site {body.site!r}")
    pilot_id, token = await rt.db.write(pilot_records.register, who, body, rt.now())
    if who.pilot_id is not None:
        rt.tokens.forget_pilot(who.pilot_id)
    registered = PilotRegistered(
        pilot_id=pilot_id,
        token=token,
        heartbeat_interval=rt.config.heartbeat_interval,
        lease_timeout=rt.config.heartbeat_timeout,
        max_poll=rt.config.max_poll,
    )
    return json_response(registered, 201)


async def _slot(rt: Runtime, pilot_id: int) -> tuple[PilotSlot, str]:
    row = await rt.db.read(pilot_records.get_pilot, pilot_id)
    if row.state not in BEATING:
        raise Conflict(f"pilot {pilot_id} is {row.state}; it must exit", {"state": row.state})
    return PilotSlot(pilot_id, row.site, row.batch_id), row.state


@router.post("/{pilot_id}/acquire", response_model=AcquireResponse)
async def acquire_jobs(
    pilot_id: int, body: AcquireRequest, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Claim jobs that fit the slot; waits up to ``wait`` seconds for work to appear."""
    pilot_of(who, pilot_id)
    started = time.perf_counter()
    slot, state = await _slot(rt, pilot_id)
    site = rt.config.site(slot.site)

    # re-read on every pass of the long-poll: an admin may drain the site meanwhile
    def taking() -> bool:
        return site is not None and site.status == SiteStatus.ONLINE and state == PilotState.RUNNING

    loop = asyncio.get_running_loop()
    idle_timeout = body.idle_timeout or (site.idle_timeout if site is not None else 0.0)
    wait = min(body.wait, rt.config.max_poll)
    retire = state == PilotState.RETIRING
    if body.idle_seconds > 0 and not retire:
        if body.idle_seconds >= idle_timeout:
            retire = await _may_go(rt, pilot_id, slot.site)
        else:
            # wake at the idle timeout to decide then, not a whole long-poll later
            wait = min(wait, idle_timeout - body.idle_seconds)
    deadline = loop.time() + wait
    skip_locked = not rt.db.is_sqlite

    def claim(tx: PoolTransaction, site: SiteConfig) -> list[AnyRow]:
        return acquire(
            tx, slot, site, body, rt.lease_policy, rt.share_rules, skip_locked=skip_locked
        )

    rows = []
    while not retire:
        waiter = rt.notifier.work.waiter(rt.notifier.WORK)
        if taking() and site is not None:
            rows = await rt.pool.write(functools.partial(claim, site=site))
        remaining = deadline - loop.time()
        if rows or remaining <= 0 or rt.stopping.is_set():
            break
        await wait_for_signal(waiter, remaining)
    idle_for = body.idle_seconds + wait if body.idle_seconds > 0 else 0.0
    if not rows and not retire and idle_for >= idle_timeout:
        retire = await _may_go(rt, pilot_id, slot.site)
    # queued work waits that this pilot could run but for its remaining walltime: it
    # leaves, and the provisioner starts a fresh pilot for that work
    short_of_time = not rows and not retire and taking() and body.walltime_left is not None
    if short_of_time and site is not None and await rt.db.read(needs_longer_slot, site, body):
        retire = await rt.db.write(pilot_records.decide_retire, pilot_id, slot.site, 0)
    assignments = []
    unprepared: list[int] = []
    reason = ""
    # workflow bodies get a token for this attempt (rare: one write for all of them)
    body_tokens = {}
    if any(r.kind == BODY for r in rows):
        body_tokens = await rt.db.write(workflow_runs.body_tokens, rows)
    for r in rows:
        try:
            payload = rt.clusters.payload_for_pilot(r.kind, r.payload)
        except SealError as exc:
            # this replica lacks the key of a worker lease: that lease goes back to the
            # pool (a replica with the key, or the retry limit, settles it); the rest go out
            unprepared.append(r.id)
            reason = str(exc)
            continue
        assignments.append(
            # rows come from our own database: construct, skip re-validating (hot path)
            Assignment.model_construct(
                job_id=r.id,
                attempt=r.attempt,
                kind=r.kind,
                resources=Resources.model_construct(
                    cores=r.cores, memory=r.memory, walltime=r.walltime, gpus=r.gpus
                ),
                payload=payload,
                payload_size=r.payload_size,
                inputs=queries.parse_ids(r.inputs),
                token=body_tokens.get(r.id),
            )
        )
    if unprepared:
        log.error("pilot %s: %d job(s) given back: %s", pilot_id, len(unprepared), reason)
        await rt.pool.write(lambda tx: give_back(tx, pilot_id, unprepared, reason, rt.lease_policy))
    outcome = "jobs" if assignments else "retire" if retire else "empty"
    rt.metrics.acquires.labels(slot.site, outcome).observe(time.perf_counter() - started)
    if assignments:
        rt.metrics.handed_out.labels(slot.site).inc(len(assignments))
    return json_response(AcquireResponse.model_construct(jobs=assignments, retire=retire))


@router.post("/{pilot_id}/heartbeat", response_model=HeartbeatResponse)
async def pilot_heartbeat(
    pilot_id: int, body: HeartbeatRequest, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Renew the pilot's leases; answers early when a held job must be dropped."""
    pilot_of(who, pilot_id)
    rt.metrics.heartbeats.inc()
    # before the write: a change made while it runs must still wake the wait below
    waiter = rt.notifier.pilots.waiter(pilot_id)
    beat = await rt.heartbeats.beat(pilot_id, body.held)
    if beat.state not in BEATING:
        return json_response(HeartbeatResponse(drop=body.held, retire=True))
    drop, debug = beat.drop, beat.debug
    wait = min(body.wait, rt.config.max_poll, rt.config.heartbeat_interval)
    # holding the answer paces the heartbeats and makes them the channel for cancellations
    # and stack-dump requests
    woken = not drop and not debug and wait > 0 and not rt.stopping.is_set()
    if woken and await wait_for_signal(waiter, wait) and body.held:
        beat = await rt.heartbeats.beat(pilot_id, body.held)
        drop, debug = beat.drop, beat.debug
    answer = HeartbeatResponse(drop=drop, retire=beat.state == PilotState.RETIRING, debug=debug)
    return json_response(answer)


@router.post("/{pilot_id}/release", response_model=ReleaseResponse)
async def release_jobs(
    pilot_id: int, body: ReleaseRequest, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Give back held jobs the pilot has not started: queued again, no attempt counted."""
    pilot_of(who, pilot_id)
    released = await rt.pool.write(
        lambda tx: release_unstarted(tx, pilot_id, body.job_ids, body.reason)
    )
    if released:
        log.info("pilot %s gave back %d unstarted job(s): %s", pilot_id, len(released), body.reason)
    return json_response(ReleaseResponse(released=released))


async def _may_go(rt: Runtime, pilot_id: int, site_name: str) -> bool:
    """An idle pilot may leave unless its site would fall below its warm minimum."""
    site = rt.config.site(site_name)
    min_warm = site.min_warm if site is not None and site.status == SiteStatus.ONLINE else 0
    gone: bool = await rt.db.write(pilot_records.decide_retire, pilot_id, site_name, min_warm)
    return gone


def _result_key(job_id: int, attempt: int) -> str:
    return f"results/{job_id}-{attempt}"


@router.post("/{pilot_id}/report", response_model=ReportResponse)
async def pilot_report(
    pilot_id: int, body: ReportRequest, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """Apply job updates and log lines atomically; 409 names jobs the pilot does not hold."""
    pilot_of(who, pilot_id)
    prepared: list[PreparedUpdate] = []
    for upd in body.updates:
        if upd.result_uploaded:
            key = _result_key(upd.job_id, upd.attempt)
            if not await asyncio.to_thread(rt.blobs.exists_sync, key):
                raise InvalidRequest(
                    f"job {upd.job_id}: result_uploaded is set but nothing was PUT to "
                    f"/pilots/{pilot_id}/jobs/{upd.job_id}/result?attempt={upd.attempt}"
                )
            prepared.append(PreparedUpdate(upd, None, key, await rt.blobs.size(key)))
        elif upd.result is not None and len(upd.result) > rt.config.inline_limit:
            key = _result_key(upd.job_id, upd.attempt)
            await rt.blobs.put(key, upd.result)
            prepared.append(PreparedUpdate(upd, None, key, len(upd.result)))
        elif upd.result is not None:
            prepared.append(PreparedUpdate(upd, upd.result, None, len(upd.result)))
        else:
            prepared.append(PreparedUpdate(upd))
    applied = await rt.pool.write(
        lambda tx: report(tx, pilot_id, prepared, body.logs, rt.lease_policy)
    )
    return json_response(ReportResponse(applied=applied))


async def _require_held(
    rt: Runtime, pilot_id: int, job_id: int, attempt: int | None = None
) -> None:
    held = await rt.db.read(held_jobs, pilot_id, {job_id})
    if job_id not in held or (attempt is not None and held[job_id].attempt != attempt):
        what = f"job {job_id}" + (f" (attempt {attempt})" if attempt is not None else "")
        raise Conflict(f"pilot {pilot_id} does not hold {what}", {"job_ids": [job_id]})


@router.put("/{pilot_id}/jobs/{job_id}/result", status_code=204)
async def upload_result(
    pilot_id: int,
    job_id: int,
    attempt: Annotated[int, Query(ge=1)],
    request: Request,
    who: PrincipalDep,
    rt: RuntimeDep,
) -> Response:
    """Upload a large outcome (raw body) before reporting the job with result_uploaded.

    Streamed to the blob store, so bound by ``max_result_size``, not ``max_request_size``.
    """
    pilot_of(who, pilot_id)
    await _require_held(rt, pilot_id, job_id, attempt)
    limit = rt.config.max_result_size
    declared = request.headers.get("content-length", "")
    try:
        if declared.isdigit() and int(declared) > limit:
            raise BlobTooLarge(int(declared))
        await rt.blobs.put_stream(_result_key(job_id, attempt), request.stream(), limit)
    except BlobTooLarge as exc:
        raise PayloadTooLarge(
            f"job {job_id}: {result_too_large(exc.size, limit)}", {"limit": limit}
        ) from None
    return Response(status_code=204)


@router.get(
    "/{pilot_id}/jobs/{job_id}/payload",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_payload(
    pilot_id: int, job_id: int, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The payload of a held job that was too large to ride along with the assignment."""
    pilot_of(who, pilot_id)
    await _require_held(rt, pilot_id, job_id)
    inline, blob, kind = await rt.db.read(queries.job_payload, job_id)
    data = inline if inline is not None else await rt.blobs.get(blob or "")
    return Response(
        rt.clusters.payload_for_pilot(kind, data), media_type="application/octet-stream"
    )


@router.get(
    "/{pilot_id}/jobs/{job_id}/inputs/{parent_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_input(
    pilot_id: int, job_id: int, parent_id: int, who: PrincipalDep, rt: RuntimeDep
) -> Response:
    """The outcome (pickled, raw) of ``parent_id``, one of the held job's ``inputs``; the
    pilot hands it to the worker, which puts the parent's value into the job's call."""
    pilot_of(who, pilot_id)
    await _require_held(rt, pilot_id, job_id)
    inline, blob = await rt.db.read(queries.job_input, job_id, parent_id)
    return await blob_response(rt, inline, blob)


@router.post("/{pilot_id}/exit", status_code=204)
async def pilot_exit(pilot_id: int, body: PilotExit, who: PrincipalDep, rt: RuntimeDep) -> Response:
    """The pilot leaves; whatever it still held is retried elsewhere at once."""
    pilot_of(who, pilot_id)
    reason = f"pilot {pilot_id} exited: {body.reason}"
    await rt.pool.write(lambda tx: release_pilot(tx, pilot_id, "exited", reason, rt.lease_policy))
    rt.tokens.forget_pilot(pilot_id)
    return Response(status_code=204)
