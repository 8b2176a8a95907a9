"""FakeGateway: one small in-memory gateway for the pilot's and the client's own tests.

The real gateway is tested end to end in tests/integration (a process, a database, real
pilots). The pilot's loops and the client's futures, streams and widgets are tested against
this fake as well, because it answers at once, records what it was sent so a test can check
the requests themselves, and can be made to misbehave on cue in ways the real one cannot:
503s for a while, a refused registration, 409 for reports of jobs the pilot lost, a job to
drop, retire, a restart on the same port that keeps its state.

One job store serves both sides of the REST + SSE contract, over a real HTTP server on port
0 (:mod:`support.fake_gateway_http`), so the real transports, keep-alive, long polls and
streaming are exercised; requests and answers are :mod:`farside_protocol`'s wire models, so
a change to the contract breaks these tests as well as the real ones. Jobs a client submits
are run by the fake itself in a thread pool (``auto_run``, a stand-in for pilots) or queued
for a pilot to acquire; :meth:`FakeGateway.add_job` queues one for a pilot directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any, Literal

import cloudpickle
import pytest

from farside_protocol import JobState
from farside_protocol.models import (
    CancelRequest,
    JobDetail,
    JobEvent,
    JobInfo,
    JobSpec,
    LogLine,
    LogPage,
    Resources,
    StateChange,
)
from farside_protocol.payload import (
    decode_call,
    decode_outcome,
    dump_function,
    encode_call,
    encode_exception,
    encode_value,
)
from farside_protocol.pilot_api import (
    AcquireRequest,
    AcquireResponse,
    Assignment,
    HeartbeatRequest,
    HeartbeatResponse,
    JobUpdate,
    PilotRegistered,
    PilotRegistration,
    ReleaseRequest,
    ReleaseResponse,
    ReportRequest,
    ReportResponse,
)

from .fake_gateway_http import Refused, handler_for

USER_TOKEN = "fake-token"
#: what registration hands the pilot; every later pilot call must carry it
PILOT_TOKEN = "pilot-own-token"
PILOT_ID = 7
FIRST_JOB_ID = 100  # far from the event numbers and list positions, so a mix-up shows

Stream = Literal["stdout", "stderr", "system"]


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

    def info(self) -> JobInfo:
        return JobInfo(**self._info_fields())

    def detail(self) -> JobDetail:
        return JobDetail(**self._info_fields(), after=[], history=self.history, attempt_list=[])

    def _info_fields(self) -> dict[str, Any]:
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
    """The job store, what each call does to it, and a restartable HTTP server.

    ``auto_run=False`` leaves submitted jobs queued for a pilot (or for the test to end).
    Everything is guarded by ``cond``, which is notified on every change: the long polls and
    streams wait on it.
    """

    def __init__(
        self,
        *,
        auto_run: bool = True,
        inline_limit: int = 1 << 16,
        max_poll: float = 0.5,
        heartbeat_interval: float = 0.3,
    ) -> None:
        self.auto_run = auto_run
        self.inline_limit = inline_limit
        self.max_poll = max_poll
        self.heartbeat_interval = heartbeat_interval
        self.cond = threading.Condition()
        self.jobs: dict[int, FakeJob] = {}
        self.logs: dict[int, list[LogLine]] = {}
        self.events: list[JobEvent] = [
            JobEvent(seq=i, job_id=0, state=JobState.FINISHED, time=0.0, attempt=1)
            for i in range(1, 4)
        ]  # old events of someone else's jobs: before head, never sent without Last-Event-ID
        self.sites: list[dict[str, Any]] = []
        self.pilots: list[dict[str, Any]] = []
        # what clients sent
        self.submit_sizes: list[int] = []
        self.last_event_ids: list[str | None] = []
        self.cancel_requests: list[dict[str, Any]] = []
        # the pilots' side: the queue they acquire from, and what they sent
        self.queue: list[Assignment] = []
        self.inputs: dict[tuple[int, int], bytes] = {}  # (job, parent) -> outcome bytes
        self.input_requests: list[tuple[int, int]] = []
        self.registration: PilotRegistration | None = None
        self.acquires: list[AcquireRequest] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.updates: list[JobUpdate] = []
        self.finals: dict[int, JobUpdate] = {}  # each job's first update that ended it
        self.handed: dict[int, Assignment] = {}
        self.handed_out = 0
        self.ended = 0
        self.held_after_acquire: list[int] = []  # jobs handed out and not yet ended
        self.released: list[tuple[int, str]] = []  # (job, reason) given back unstarted
        self.exit_reason: str | None = None
        # misbehaviour on cue
        self.down = 0  # answer this many requests with 503
        self.refuse_registration = False
        self.gone: set[int] = set()  # jobs whose reports get 409
        self.to_drop: set[int] = set()
        self.retire = False
        self.pool = ThreadPoolExecutor(4)
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------- lifecycle

    def start(self) -> FakeGateway:
        """Serve on a free port, or on the same one again after :meth:`stop`."""
        self.stopping = False
        server = ThreadingHTTPServer(("127.0.0.1", self.port), handler_for(self))
        server.daemon_threads = True
        self.server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away as a restarting gateway does: open streams and long polls end, state stays."""
        with self._changing():
            self.stopping = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the lock for a change, then wake the long polls and streams waiting on one."""
        with self.cond:
            yield
            self.cond.notify_all()

    def in_outage(self) -> bool:
        """Whether this request falls in the outage ``down`` asked for (and counts it)."""
        with self.cond:
            if self.down <= 0:
                return False
            self.down -= 1
            return True

    # ------------------------------------------------------------ jobs

    def _new_job(self, spec: JobSpec) -> FakeJob:
        with self.cond:
            job = FakeJob(id=len(self.jobs) + FIRST_JOB_ID, spec=spec)
            self.jobs[job.id] = job
            self.logs[job.id] = []
            return job

    def job(self, job_id: int) -> FakeJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise Refused(404, "not_found", f"no job {job_id}")
        return job

    def emit(self, job_id: int, state: JobState, reason: str | None = None) -> None:
        """Move a job to ``state`` and send the event, as the gateway does on a pilot's news."""
        with self._changing():
            job = self.jobs[job_id]
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

    def log(
        self,
        job_id: int,
        text: str,
        stream: Stream = "stdout",
        *,
        when: float | None = None,
        attempt: int = 1,
    ) -> None:
        with self._changing():
            lines = self.logs[job_id]
            lines.append(
                LogLine(
                    seq=len(lines),
                    job_id=job_id,
                    attempt=attempt,
                    stream=stream,
                    time=time.time() if when is None else when,
                    text=text,
                )
            )

    def log_page(self, job: FakeJob, since: int, limit: int = 2) -> LogPage:
        """At most ``limit`` lines per page, so paging is exercised."""
        with self.cond:
            lines = self.logs[job.id][since : since + limit]
            next_seq = since + len(lines)
            ended = job.state.terminal and next_seq >= len(self.logs[job.id])
            return LogPage(lines=lines, next_seq=next_seq, ended=ended)

    # ------------------------------------------------------ the client's side

    def submit(self, specs: list[JobSpec]) -> list[int]:
        with self._changing():
            ids = [self._new_job(spec).id for spec in specs]
            self.submit_sizes.append(len(specs))
            if not self.auto_run:
                for job_id in ids:
                    self._queue(self.jobs[job_id])
        if self.auto_run:
            for job_id in ids:
                self.pool.submit(self.run, job_id)
        return ids

    def run(self, job_id: int) -> None:
        """Execute a job's call here, as a pilot would."""
        job = self.jobs[job_id]
        if job.state.terminal:
            return
        self.emit(job_id, JobState.RUNNING)
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
        self.emit(job_id, state, reason)

    def cancel(self, request: CancelRequest) -> list[int]:
        with self.cond:
            self.cancel_requests.append(request.model_dump())
            wanted = set(request.job_ids)
            if request.group:
                wanted |= {j.id for j in self.jobs.values() if j.spec.group == request.group}
            done = []
            for i in sorted(wanted):
                job = self.jobs.get(i)
                if job is not None and not job.state.terminal:
                    self.emit(i, JobState.CANCELLED, "cancelled by alice")
                    done.append(i)
            # as the gateway does: no pilot gets them now, and one that holds them drops them
            self.queue = [a for a in self.queue if a.job_id not in done]
            self.to_drop |= set(done) & self.handed.keys()
            return done

    # ------------------------------------------------------- the pilots' side

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
        """Queue a call of ``fn`` for a pilot, as if a user had submitted it; ``inputs`` are
        the outcomes of its parent jobs, by parent id."""
        spec = JobSpec(
            kind="function",
            payload=encode_call(dump_function(fn), args, kwargs),
            resources=Resources(cores=cores, memory=memory, walltime=walltime, gpus=gpus),
            after=list(inputs or {}),
            inputs=list(inputs or {}),
        )
        with self._changing():
            job = self._new_job(spec)
            for parent, outcome in (inputs or {}).items():
                self.inputs[job.id, parent] = outcome
            self._queue(job, inline=inline)
        return job.id

    def _queue(self, job: FakeJob, inline: bool = True) -> None:
        self.queue.append(
            Assignment(
                job_id=job.id,
                attempt=1,
                kind=job.spec.kind,
                resources=job.spec.resources,
                payload=job.spec.payload if inline else None,
                payload_size=len(job.spec.payload),
                inputs=job.spec.inputs,
            )
        )

    def register(self, request: PilotRegistration) -> PilotRegistered:
        if self.refuse_registration:
            raise Refused(401, "unauthorized", "bad site token")
        with self._changing():
            self.registration = request
        return PilotRegistered(
            pilot_id=PILOT_ID,
            token=PILOT_TOKEN,
            heartbeat_interval=self.heartbeat_interval,
            lease_timeout=10,
            max_poll=self.max_poll,
        )

    def acquire(self, request: AcquireRequest) -> AcquireResponse:
        with self.cond:
            self.acquires.append(request)
            self.cond.wait_for(lambda: self.queue or self.retire or self.stopping, request.wait)
            jobs, self.queue = self.queue[: request.max_jobs], self.queue[request.max_jobs :]
            self.handed.update((job.job_id, job) for job in jobs)
            self.handed_out += len(jobs)
            self.held_after_acquire.append(self.handed_out - self.ended)
            return AcquireResponse(jobs=jobs, retire=self.retire and not jobs)

    def heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        with self.cond:
            self.heartbeats.append(request)
            self.cond.wait_for(lambda: self.to_drop or self.stopping, request.wait)
            drop, self.to_drop = sorted(self.to_drop), set()
            return HeartbeatResponse(drop=drop, retire=self.retire)

    def report(self, request: ReportRequest) -> ReportResponse:
        with self._changing():
            named = {u.job_id for u in request.updates} | {e.job_id for e in request.logs}
            lost = sorted(named & self.gone)
            if lost:
                raise Refused(409, "conflict", "not your jobs", job_ids=lost)
            # the lines first: a test that sees the job ended sees the lines it printed
            for entry in request.logs:
                self.log(
                    entry.job_id, entry.text, entry.stream, when=entry.time, attempt=entry.attempt
                )
            for update in request.updates:
                self._apply(update)
            return ReportResponse(applied=len(request.updates))

    def _apply(self, update: JobUpdate) -> None:
        self.updates.append(update)
        if update.state == "running":
            self.emit(update.job_id, JobState.RUNNING)
            return
        self.ended += 1
        self.finals.setdefault(update.job_id, update)
        job = self.jobs[update.job_id]
        if not update.result_uploaded:
            job.outcome = update.result
        job.error = update.error
        self.emit(update.job_id, JobState(update.state), update.error)

    def release(self, request: ReleaseRequest) -> ReleaseResponse:
        # as the gateway does: queued again in front, for whichever pilot asks next
        with self._changing():
            self.released.extend((job_id, request.reason) for job_id in request.job_ids)
            back = [self.handed[job_id] for job_id in request.job_ids if job_id in self.handed]
            self.queue[:0] = back
            self.handed_out -= len(back)
            return ReleaseResponse(released=[a.job_id for a in back])

    def pilot_exit(self, reason: str) -> None:
        with self._changing():
            self.exit_reason = reason

    def input(self, job_id: int, parent: int) -> bytes:
        with self.cond:
            self.input_requests.append((job_id, parent))
        if (job_id, parent) not in self.inputs:
            raise Refused(404, "not_found", f"job {parent} is not an input")
        return self.inputs[job_id, parent]

    def upload_result(self, job_id: int, data: bytes) -> None:
        with self.cond:
            self.jobs[job_id].outcome = data

    # ---------------------------------------------- the pilot tests' helpers

    def drop(self, job_id: int) -> None:
        """Tell the pilot holding the job to kill and forget it (the next heartbeat does)."""
        with self._changing():
            self.to_drop.add(job_id)

    def retire_pilots(self) -> None:
        with self._changing():
            self.retire = True

    async def wait_for(self, predicate: Callable[[], object], within: float = 60.0) -> None:
        """Until ``predicate()`` holds, checked under the lock so it sees no half change.

        The default is generous: the first job of a pilot starts a worker process, which
        takes a while on two loaded cores; a condition that holds returns at once anyway.
        """
        deadline = time.monotonic() + within
        while True:
            with self.cond:
                if predicate():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            # the pilot runs on this event loop, so the wait must not block it
            await asyncio.sleep(0.01)

    def final(self, job_id: int) -> JobUpdate | None:
        return self.finals.get(job_id)

    def done(self, *job_ids: int) -> bool:
        return all(job_id in self.finals for job_id in job_ids)

    def outcome(self, job_id: int) -> tuple[bool, Any]:
        assert job_id in self.finals
        data = self.jobs[job_id].outcome
        assert data is not None
        return decode_outcome(data)

    def lines(self, job_id: int, stream: Stream | None = None) -> list[str]:
        return [
            line.text
            for line in self.logs.get(job_id, [])
            if stream is None or line.stream == stream
        ]


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    """A FakeGateway serving on a free port; its server and runner threads end with the test."""
    fake = FakeGateway().start()
    yield fake
    fake.close()
