"""How a :class:`support.fake_gateway.FakeGateway` is reached: the request handler of its
threaded HTTP/1.1 server.

It routes the client's and the pilots' calls to the fake, checks the bearer token each side
must send, answers with the gateway's error envelope, and streams the SSE of job events and
of a job's log lines.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, RootModel, ValidationError

from farside_protocol.models import (
    API_PREFIX,
    CancelRequest,
    CancelResponse,
    ErrorBody,
    ErrorEnvelope,
    EventBatch,
    JobList,
    PilotInfo,
    SiteInfo,
    SubmitRequest,
    SubmitResponse,
    WhoAmI,
)
from farside_protocol.pilot_api import (
    AcquireRequest,
    HeartbeatRequest,
    PilotExit,
    PilotRegistration,
    ReleaseRequest,
    ReportRequest,
)

if TYPE_CHECKING:
    from .fake_gateway import FakeGateway, FakeJob

#: how long an idle stream waits before a keep-alive comment
PING = 0.2

SiteList = RootModel[list[SiteInfo]]
PilotList = RootModel[list[PilotInfo]]

#: what a route answers: a status and a body (a wire model, raw bytes or None), or None
#: when it has streamed its answer itself
Answer = tuple[int, BaseModel | bytes | None] | None


class Refused(Exception):
    """An error answer in the gateway's envelope, raised from anywhere in a request."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.envelope = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details))


def handler_for(fake: FakeGateway) -> type[BaseHTTPRequestHandler]:
    # imported here: the fake's module imports this one
    from .fake_gateway import PILOT_TOKEN, USER_TOKEN

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = url.path.removeprefix(API_PREFIX + "/").split("/")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if fake.in_outage():
                    raise Refused(503, "unavailable", "restarting")
                if method == "POST" and parts == ["pilots"]:
                    # the pilot's site token is not checked: refuse_registration stands in
                    answer: Answer = 201, fake.register(PilotRegistration.model_validate_json(body))
                elif parts[0] == "pilots" and len(parts) > 2:
                    self._authorize(PILOT_TOKEN)
                    answer = self._pilot_call(method, parts[2:], body)
                else:
                    self._authorize(USER_TOKEN)
                    answer = self._client_call(method, parts, query, body)
            except ValidationError as exc:
                answer = 422, Refused(422, "invalid_request", str(exc)).envelope
            except Refused as refusal:
                answer = refusal.status, refusal.envelope
            if answer is not None:
                self._send(*answer)

        def _authorize(self, token: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {token}":
                raise Refused(401, "unauthorized", "unknown token")

        def _pilot_call(self, method: str, call: list[str], body: bytes) -> Answer:
            match method, call:
                case "POST", ["acquire"]:
                    return 200, fake.acquire(AcquireRequest.model_validate_json(body))
                case "POST", ["heartbeat"]:
                    return 200, fake.heartbeat(HeartbeatRequest.model_validate_json(body))
                case "POST", ["report"]:
                    return 200, fake.report(ReportRequest.model_validate_json(body))
                case "POST", ["release"]:
                    return 200, fake.release(ReleaseRequest.model_validate_json(body))
                case "POST", ["exit"]:
                    fake.pilot_exit(PilotExit.model_validate_json(body).reason)
                    return 204, None
                case "GET", ["jobs", job_id, "payload"]:
                    return 200, fake.job(int(job_id)).spec.payload
                case "GET", ["jobs", job_id, "inputs", parent]:
                    return 200, fake.input(int(job_id), int(parent))
                case "PUT", ["jobs", job_id, "result"]:
                    fake.upload_result(int(job_id), body)
                    return 204, None
            raise Refused(404, "not_found", self.path)

        def _client_call(
            self, method: str, parts: list[str], query: dict[str, str], body: bytes
        ) -> Answer:
            match method, parts:
                case "GET", ["whoami"]:
                    return 200, WhoAmI(name="alice", kind="user")
                case "GET", ["events"]:
                    self._events(query.get("terminal_only") == "true")
                    return None
                case "GET", ["jobs"]:
                    return 200, JobList(jobs=[job.info() for job in _listed(fake, query)])
                case "GET", ["jobs", job_id] if job_id.isdigit():
                    return 200, fake.job(int(job_id)).detail()
                case "GET", ["jobs", job_id, "result"] if job_id.isdigit():
                    outcome = fake.job(int(job_id)).outcome
                    if outcome is not None:
                        return 200, outcome
                case "GET", ["jobs", job_id, "logs"] if job_id.isdigit():
                    return 200, fake.log_page(fake.job(int(job_id)), int(query.get("since", 0)))
                case "GET", ["jobs", job_id, "logs", "stream"] if job_id.isdigit():
                    self._log_stream(fake.job(int(job_id)), int(query.get("since", 0)))
                    return None
                case "GET", ["sites"]:
                    return 200, SiteList.model_validate(fake.sites)
                case "GET", ["pilots"]:
                    return 200, PilotList.model_validate(fake.pilots)
                case "POST", ["jobs"]:
                    submitted = fake.submit(SubmitRequest.model_validate_json(body).jobs)
                    return 201, SubmitResponse(job_ids=submitted)
                case "POST", ["jobs", "cancel"]:
                    cancelled = fake.cancel(CancelRequest.model_validate_json(body))
                    return 200, CancelResponse(cancelled=cancelled)
            raise Refused(404, "not_found", self.path)

        def _send(self, status: int, body: BaseModel | bytes | None) -> None:
            content_type = "application/octet-stream"
            if isinstance(body, BaseModel):
                body, content_type = body.model_dump_json().encode(), "application/json"
            data = body or b""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _start_stream(self) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()

        def _write(self, text: str) -> bool:
            try:
                self.wfile.write(text.encode())
                self.wfile.flush()
            except OSError:
                return False
            return True

        def _events(self, terminal_only: bool) -> None:
            last = self.headers.get("Last-Event-ID")
            with fake.cond:
                fake.last_event_ids.append(last)
                head = len(fake.events)
            self._start_stream()
            cursor = int(last) if last is not None else head
            if not self._write(f"event: hello\ndata: {json.dumps({'head': head})}\n\n"):
                return
            while True:
                with fake.cond:
                    fake.cond.wait_for(lambda c=cursor: fake.stopping or len(fake.events) > c, PING)
                    if fake.stopping:
                        return
                    new = fake.events[cursor:]
                cursor += len(new)
                sent = [e for e in new if e.state.terminal or not terminal_only]
                if sent:
                    data = EventBatch(events=sent).model_dump_json()
                    message = f"event: jobs\nid: {cursor}\ndata: {data}\n\n"
                else:
                    message = ": ping\n\n"
                if not self._write(message):
                    return

        def _log_stream(self, job: FakeJob, since: int) -> None:
            self._start_stream()
            while True:
                with fake.cond:
                    fake.cond.wait_for(
                        lambda s=since: (
                            fake.stopping or len(fake.logs[job.id]) > s or job.state.terminal
                        ),
                        PING,
                    )
                    if fake.stopping:
                        return
                    page = fake.log_page(job, since)
                since = page.next_seq
                if (page.lines or page.ended) and not self._write(
                    f"event: logs\ndata: {page.model_dump_json()}\n\n"
                ):
                    return
                if page.ended:
                    return
                if not page.lines and not self._write(": ping\n\n"):
                    return

    return Handler


def _listed(fake: FakeGateway, query: dict[str, str]) -> list[FakeJob]:
    """The jobs ``GET /jobs`` answers with, newest first, filtered as the query asks."""
    jobs = sorted(fake.jobs.values(), key=lambda j: -j.id)
    jobs = [j for j in jobs if query.get("state") in (None, j.state.value)]
    jobs = [j for j in jobs if query.get("group") in (None, j.spec.group)]
    jobs = [j for j in jobs if query.get("kind") in (None, j.spec.kind)]
    jobs = [j for j in jobs if j.id < int(query.get("before_id", j.id + 1))]
    return jobs[: int(query.get("limit", 1000))]
