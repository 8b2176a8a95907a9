"""A small in-memory stand-in for the gateway's pilot API, served through httpx.MockTransport.

Only what the pilot's loops need: it hands out queued jobs, holds long polls, records
reports, and can be told to misbehave (5xx, 401, 409, drops, retire).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from farside_protocol.models import API_PREFIX, Resources
from farside_protocol.payload import decode_outcome, dump_function, encode_call
from farside_protocol.pilot_api import (
    AcquireRequest,
    AcquireResponse,
    Assignment,
    HeartbeatRequest,
    HeartbeatResponse,
    JobUpdate,
    LogEntry,
    PilotRegistered,
    PilotRegistration,
    ReleaseRequest,
    ReportRequest,
)

PILOT_TOKEN = "pilot-own-token"


def _error(status: int, code: str, message: str, **details: Any) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return httpx.Response(status, json=body)


class FakeGateway:
    def __init__(self, max_poll: float = 0.5, heartbeat_interval: float = 0.3) -> None:
        self.max_poll = max_poll
        self.heartbeat_interval = heartbeat_interval
        self.queue: list[Assignment] = []
        self.payloads: dict[int, bytes] = {}
        self.inputs: dict[tuple[int, int], bytes] = {}  # (job, parent) -> outcome bytes
        self.input_requests: list[tuple[int, int]] = []
        self.registration: PilotRegistration | None = None
        self.acquires: list[AcquireRequest] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.updates: list[JobUpdate] = []
        self.logs: list[LogEntry] = []
        self.report_times: list[float] = []
        self.results: dict[int, bytes] = {}
        self.handed_out = 0
        self.handed: dict[int, Assignment] = {}
        self.ended = 0
        self.held_after_acquire: list[int] = []  # jobs handed out and not yet ended
        self.to_drop: set[int] = set()
        self.gone: set[int] = set()  # jobs whose reports get 409
        self.released: list[tuple[int, str]] = []  # (job, reason) given back unstarted
        self.retire = False
        self.down = 0  # answer this many requests with 503
        self.refuse_registration = False
        self.exit_reason: str | None = None
        self._next_id = 1
        self._changed = asyncio.Event()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ----------------------------------------------------------- test helpers

    def add_job(
        self,
        fn: Any,
        *args: Any,
        inline: bool = True,
        cores: int = 1,
        memory: int = 1024**3,
        walltime: int = 3600,
        gpus: int = 0,
        inputs: dict[int, bytes] | None = None,
        **kwargs: Any,
    ) -> int:
        job_id = self._next_id
        self._next_id += 1
        payload = encode_call(dump_function(fn), args, kwargs)
        self.payloads[job_id] = payload
        self.queue.append(
            Assignment(
                job_id=job_id,
                attempt=1,
                kind="function",
                resources=Resources(cores=cores, memory=memory, walltime=walltime, gpus=gpus),
                payload=payload if inline else None,
                payload_size=len(payload),
                inputs=list(inputs or {}),
            )
        )
        for parent, outcome in (inputs or {}).items():
            self.inputs[job_id, parent] = outcome
        self._poke()
        return job_id

    def _poke(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Any, within: float = 60.0) -> None:
        # generous: the first job of a pilot starts a worker process, which takes a while
        # on two loaded cores; a condition that holds returns at once anyway
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not reached")
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def final(self, job_id: int) -> JobUpdate | None:
        for update in self.updates:
            if update.job_id == job_id and update.state != "running":
                return update
        return None

    def done(self, *job_ids: int) -> bool:
        return all(self.final(j) is not None for j in job_ids)

    def outcome(self, job_id: int) -> tuple[bool, Any]:
        update = self.final(job_id)
        assert update is not None
        data = self.results[job_id] if update.result_uploaded else update.result
        assert data is not None
        return decode_outcome(data)

    def lines(self, job_id: int, stream: str | None = None) -> list[str]:
        return [
            e.text
            for e in self.logs
            if e.job_id == job_id and (stream is None or e.stream == stream)
        ]

    # ----------------------------------------------------------- the API

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(API_PREFIX)
        parts = path.strip("/").split("/")
        if self.down > 0:
            self.down -= 1
            return _error(503, "unavailable", "restarting")
        if path == "/pilots":
            return self._register(request)
        if request.headers.get("authorization") != f"Bearer {PILOT_TOKEN}":
            return _error(401, "unauthorized", "unknown token")
        action = parts[2]
        body = json.loads(request.content) if request.method == "POST" else None
        try:
            if action == "acquire":
                return await self._acquire(AcquireRequest.model_validate(body))
            if action == "heartbeat":
                return await self._heartbeat(HeartbeatRequest.model_validate(body))
            if action == "report":
                return self._report(ReportRequest.model_validate(body))
            if action == "release":
                return self._release(ReleaseRequest.model_validate(body))
            if action == "exit":
                self.exit_reason = str(body["reason"]) if body else ""
                self._poke()
                return httpx.Response(204)
            if action == "jobs" and parts[4] == "payload":
                return httpx.Response(200, content=self.payloads[int(parts[3])])
            if action == "jobs" and parts[4] == "inputs":
                key = (int(parts[3]), int(parts[5]))
                self.input_requests.append(key)
                if key not in self.inputs:
                    return _error(404, "not_found", f"job {key[1]} is not an input")
                return httpx.Response(200, content=self.inputs[key])
            if action == "jobs" and parts[4] == "result":
                self.results[int(parts[3])] = request.content
                return httpx.Response(204)
        finally:
            self._poke()
        return _error(404, "not_found", path)

    def _register(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_registration:
            return _error(401, "unauthorized", "bad site token")
        self.registration = PilotRegistration.model_validate_json(request.content)
        answer = PilotRegistered(
            pilot_id=7,
            token=PILOT_TOKEN,
            heartbeat_interval=self.heartbeat_interval,
            lease_timeout=10,
            max_poll=self.max_poll,
        )
        return httpx.Response(201, json=answer.model_dump(mode="json"))

    async def _acquire(self, req: AcquireRequest) -> httpx.Response:
        self.acquires.append(req)
        deadline = time.monotonic() + req.wait
        while not self.queue and not self.retire and time.monotonic() < deadline:
            self._changed.clear()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._changed.wait()
            except TimeoutError:
                break
        jobs, self.queue = self.queue[: req.max_jobs], self.queue[req.max_jobs :]
        self.handed.update((job.job_id, job) for job in jobs)
        self.handed_out += len(jobs)
        self.held_after_acquire.append(self.handed_out - self.ended)
        answer = AcquireResponse(jobs=jobs, retire=self.retire and not jobs)
        return httpx.Response(200, json=answer.model_dump(mode="json"))

    async def _heartbeat(self, req: HeartbeatRequest) -> httpx.Response:
        self.heartbeats.append(req)
        deadline = time.monotonic() + req.wait
        while not self.to_drop and time.monotonic() < deadline:
            self._changed.clear()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._changed.wait()
            except TimeoutError:
                break
        drop, self.to_drop = sorted(self.to_drop), set()
        answer = HeartbeatResponse(drop=drop, retire=self.retire)
        return httpx.Response(200, json=answer.model_dump(mode="json"))

    def _report(self, req: ReportRequest) -> httpx.Response:
        named = {u.job_id for u in req.updates} | {e.job_id for e in req.logs}
        lost = sorted(named & self.gone)
        if lost:
            return _error(409, "conflict", "not your jobs", job_ids=lost)
        self.report_times.append(time.monotonic())
        self.updates.extend(req.updates)
        self.ended += sum(1 for u in req.updates if u.state != "running")
        self.logs.extend(req.logs)
        return httpx.Response(200, json={"applied": len(req.updates)})

    def _release(self, req: ReleaseRequest) -> httpx.Response:
        # as the gateway does: queued again in front, for whichever pilot asks next
        self.released.extend((job_id, req.reason) for job_id in req.job_ids)
        back = [self.handed[job_id] for job_id in req.job_ids if job_id in self.handed]
        self.queue[:0] = back
        self.handed_out -= len(back)
        return httpx.Response(200, json={"released": [a.job_id for a in back]})
