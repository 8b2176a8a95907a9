"""A small in-memory gateway that speaks the client's part of the REST + SSE contract.

It runs a real HTTP server in a thread on port 0 (so the client's real transport, keep-alive
and streaming are exercised), executes submitted calls itself in a thread pool (a stand-in
for pilots), and can be stopped and restarted on the same port with its state kept, like a
gateway restart backed by a database.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cloudpickle

from farside_protocol import JobState
from farside_protocol.models import (
    CancelRequest,
    EventBatch,
    JobDetail,
    JobEvent,
    JobInfo,
    JobSpec,
    LogLine,
    LogPage,
    StateChange,
    SubmitRequest,
)
from farside_protocol.payload import decode_call, encode_exception, encode_value

TOKEN = "fake-token"
PING = 0.2


@dataclass
class FakeJob:
    id: int
    spec: JobSpec
    state: JobState = JobState.QUEUED
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended: datetime | None = None
    outcome: bytes | None = None
    error: str | None = None
    history: list[StateChange] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return dict(
            id=self.id,
            kind=self.spec.kind,
            name=self.spec.name,
            group=self.spec.group,
            owner="alice",
            state=self.state,
            site="local",
            pilot_id=None,
            attempts=1,
            resources=self.spec.resources,
            priority=self.spec.priority,
            created=self.created,
            queued=self.created,
            started=None,
            ended=self.ended,
            exit_code=None,
            error_class=None,
            error=self.error,
            wall_time=None,
            cpu_time=None,
            max_rss=None,
        )


class FakeGateway:
    """State plus a restartable HTTP server. ``auto_run=False`` leaves jobs queued."""

    def __init__(self, *, auto_run: bool = True, inline_limit: int = 1 << 16) -> None:
        self.auto_run = auto_run
        self.inline_limit = inline_limit
        self.cond = threading.Condition()
        self.jobs: dict[int, FakeJob] = {}
        self.events: list[JobEvent] = [
            JobEvent(seq=i, job_id=0, state=JobState.FINISHED, time=0.0, attempt=1)
            for i in range(1, 4)
        ]  # old events of someone else's jobs: before head, never sent without Last-Event-ID
        self.logs: dict[int, list[LogLine]] = {}
        self.submit_sizes: list[int] = []
        self.last_event_ids: list[str | None] = []
        self.cancel_requests: list[dict[str, Any]] = []
        self.sites: list[dict[str, Any]] = []
        self.pilots: list[dict[str, Any]] = []
        self.pool = ThreadPoolExecutor(4)
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------- lifecycle

    def start(self) -> FakeGateway:
        self.stopping = False
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ jobs

    def _emit(self, job: FakeJob, state: JobState, reason: str | None = None) -> None:
        with self.cond:
            job.state = state
            job.history.append(
                StateChange(state=state, time=datetime.now(UTC), attempt=1, reason=reason)
            )
            inline = job.outcome if job.outcome and len(job.outcome) <= self.inline_limit else None
            size = len(job.outcome) if job.outcome and inline is None else None
            if state.terminal:
                job.ended = datetime.now(UTC)
            self.events.append(
                JobEvent(
                    seq=len(self.events) + 1,
                    job_id=job.id,
                    state=state,
                    time=time.time(),
                    attempt=1,
                    reason=reason,
                    result=inline if state.terminal else None,
                    result_size=size if state.terminal else None,
                    error_class="user" if state is JobState.FAILED and job.outcome else None,
                )
            )
            self.cond.notify_all()

    def submit(self, specs: list[JobSpec]) -> list[int]:
        with self.cond:
            ids = []
            for spec in specs:
                job = FakeJob(id=len(self.jobs) + 100, spec=spec)
                self.jobs[job.id] = job
                self.logs[job.id] = []
                ids.append(job.id)
            self.submit_sizes.append(len(specs))
        if self.auto_run:
            for i in ids:
                self.pool.submit(self.run, i)
        return ids

    def log(self, job_id: int, text: str) -> None:
        with self.cond:
            lines = self.logs[job_id]
            lines.append(
                LogLine(
                    seq=len(lines),
                    job_id=job_id,
                    attempt=1,
                    stream="stdout",
                    time=time.time(),
                    text=text,
                )
            )
            self.cond.notify_all()

    def run(self, job_id: int) -> None:
        """Execute a job's call here, as a pilot would."""
        job = self.jobs[job_id]
        if job.state.terminal:
            return
        self._emit(job, JobState.RUNNING)
        call = decode_call(job.spec.payload)
        fn = cloudpickle.loads(call.function)
        args, kwargs = cloudpickle.loads(call.arguments)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                value = fn(*args, **kwargs)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"  # as a pilot reports it
            self.finish(job_id, encode_exception(exc), JobState.FAILED, out.getvalue(), reason)
        else:
            self.finish(job_id, encode_value(value), JobState.FINISHED, out.getvalue())

    def finish(
        self,
        job_id: int,
        outcome: bytes | None,
        state: JobState,
        output: str = "",
        reason: str | None = None,
    ) -> None:
        job = self.jobs[job_id]
        for line in output.splitlines(keepends=True):
            self.log(job_id, line)
        job.outcome = outcome
        job.error = reason
        self._emit(job, state, reason)

    def cancel(self, request: CancelRequest) -> list[int]:
        self.cancel_requests.append(request.model_dump())
        wanted = set(request.job_ids)
        if request.group:
            wanted |= {j.id for j in self.jobs.values() if j.spec.group == request.group}
        done = []
        for i in sorted(wanted):
            job = self.jobs.get(i)
            if job is not None and not job.state.terminal:
                self._emit(job, JobState.CANCELLED, "cancelled by alice")
                done.append(i)
        return done


def _handler(fake: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message, "details": {}}})

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            self._error(401, "unauthorized", "unknown token")
            return False

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if not self._authorized():
                return
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = url.path.removeprefix("/api/v1/").split("/")
            if parts == ["whoami"]:
                self._send(200, {"name": "alice", "kind": "user"})
            elif parts == ["events"]:
                self._events(query.get("terminal_only") == "true")
            elif parts == ["jobs"]:
                jobs = sorted(fake.jobs.values(), key=lambda j: -j.id)
                jobs = [j for j in jobs if query.get("state") in (None, j.state.value)]
                jobs = [j for j in jobs if query.get("group") in (None, j.spec.group)]
                jobs = [j for j in jobs if query.get("kind") in (None, j.spec.kind)]
                jobs = [j for j in jobs if j.id < int(query.get("before_id", j.id + 1))]
                jobs = jobs[: int(query.get("limit", 1000))]
                infos = [JobInfo(**j.info()).model_dump(mode="json") for j in jobs]
                self._send(200, {"jobs": infos})
            elif parts[0] == "jobs" and parts[1].isdigit():
                job = fake.jobs.get(int(parts[1]))
                if job is None:
                    self._error(404, "not_found", f"no job {parts[1]}")
                elif len(parts) == 2:
                    detail = JobDetail(**job.info(), after=[], history=job.history, attempt_list=[])
                    self._send(200, detail.model_dump(mode="json"))
                elif parts[2:] == ["result"] and job.outcome is not None:
                    self._send(200, job.outcome, "application/octet-stream")
                elif parts[2:] == ["logs"]:
                    self._send(
                        200, _page(fake, job, int(query.get("since", 0))).model_dump(mode="json")
                    )
                elif parts[2:] == ["logs", "stream"]:
                    self._log_stream(job, int(query.get("since", 0)))
                else:
                    self._error(404, "not_found", self.path)
            elif parts in (["sites"], ["pilots"]):
                self._send(200, getattr(fake, parts[0]))
            else:
                self._error(404, "not_found", self.path)

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = self._body()
            if self.path == "/api/v1/jobs":
                request = SubmitRequest.model_validate_json(body)
                self._send(201, {"job_ids": fake.submit(request.jobs)})
            elif self.path == "/api/v1/jobs/cancel":
                cancelled = fake.cancel(CancelRequest.model_validate_json(body))
                self._send(200, {"cancelled": cancelled})
            else:
                self._error(404, "not_found", self.path)

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
            fake.last_event_ids.append(last)
            with fake.cond:
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
                    page = _page(fake, job, since)
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


def _page(fake: FakeGateway, job: FakeJob, since: int, limit: int = 2) -> LogPage:
    """At most ``limit`` lines per page, so paging is exercised."""
    lines = fake.logs[job.id][since : since + limit]
    next_seq = since + len(lines)
    ended = job.state.terminal and next_seq >= len(fake.logs[job.id])
    return LogPage(lines=lines, next_seq=next_seq, ended=ended)
