"""Read-only queries behind the user endpoints and the event and log streams."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, exists, func, select

from farside_protocol import ErrorClass, JobState, NotFound
from farside_protocol.models import (
    AttemptInfo,
    JobDetail,
    JobEvent,
    JobInfo,
    LogLine,
    LogPage,
    PilotInfo,
    Resources,
    StateChange,
)
from farside_protocol.states import TERMINAL_STATES

from ..db.schema import AnyRow, attempts, events, job_deps, jobs, log_lines, pilots
from .pilots import LIVE_PILOT_STATES

_TERMINAL = [s.value for s in TERMINAL_STATES]


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


_INFO_COLUMNS = [c for c in jobs.c if c.name not in ("payload", "result")]


def parse_ids(text: str | None) -> list[int]:
    """Job ids stored as "12,15" (``jobs.inputs``); None or "" is none."""
    return [int(part) for part in text.split(",")] if text else []


def _job_info(row: AnyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "group": row.group_name,
        "owner": row.owner,
        "state": row.state,
        "site": row.site,
        "pilot_id": row.pilot_id,
        "attempts": row.attempt,
        "resources": Resources(
            cores=row.cores,
            memory=row.memory,
            walltime=row.walltime,
            gpus=row.gpus,
            gpu_model=row.gpu_model,
            arch=row.arch,
        ),
        "env": row.env,
        "adjusted": row.adjusted,
        "priority": row.priority,
        "created": _dt(row.created_at),
        "queued": _dt(row.queued_at),
        "started": _dt(row.started_at),
        "ended": _dt(row.ended_at),
        "exit_code": row.exit_code,
        "error_class": row.error_class,
        "error": row.error,
        "wall_time": row.wall_time,
        "cpu_time": row.cpu_time,
        "max_rss": row.max_rss,
    }


def list_jobs(
    conn: Connection,
    owner: str | None,
    state: str | None,
    group: str | None,
    limit: int,
    before_id: int | None,
    batch_id: str | None = None,
    kind: str | None = None,
) -> list[JobInfo]:
    query = select(*_INFO_COLUMNS).order_by(jobs.c.id.desc()).limit(limit)
    if batch_id is not None:
        ran_there = select(attempts.c.job_id).where(attempts.c.batch_id == batch_id)
        query = query.where(jobs.c.id.in_(ran_there))
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    if state is not None:
        query = query.where(jobs.c.state == state)
    if group is not None:
        query = query.where(jobs.c.group_name == group)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    if before_id is not None:
        query = query.where(jobs.c.id < before_id)
    return [JobInfo.model_validate(_job_info(row)) for row in conn.execute(query)]


def _owned_job(conn: Connection, job_id: int, owner: str | None) -> AnyRow:
    row = conn.execute(select(*_INFO_COLUMNS).where(jobs.c.id == job_id)).first()
    if row is None or (owner is not None and row.owner != owner):
        raise NotFound(f"job {job_id} not found")
    return row


def job_detail(conn: Connection, job_id: int, owner: str | None) -> JobDetail:
    row = _owned_job(conn, job_id, owner)
    parents = conn.execute(
        select(job_deps.c.parent_id).where(job_deps.c.child_id == job_id)
    ).scalars()
    history = [
        StateChange(state=e.state, time=_dt(e.time), attempt=e.attempt, reason=e.reason)
        for e in conn.execute(select(events).where(events.c.job_id == job_id).order_by(events.c.id))
    ]
    attempt_list = [
        AttemptInfo(
            number=a.number,
            pilot_id=a.pilot_id,
            site=a.site,
            batch_id=a.batch_id,
            state=a.state,
            started=_dt(a.started_at),
            ended=_dt(a.ended_at),
            error_class=a.error_class,
            error=a.error,
            exit_code=a.exit_code,
            wall_time=a.wall_time,
            cpu_time=a.cpu_time,
            max_rss=a.max_rss,
            gpu_memory=a.max_gpu_memory,
            gpu_utilization=a.gpu_utilization,
        )
        for a in conn.execute(
            select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
        )
    ]
    return JobDetail.model_validate(
        {
            **_job_info(row),
            "after": sorted(parents),
            "inputs": parse_ids(row.inputs),
            "history": history,
            "attempt_list": attempt_list,
        }
    )


def job_result(conn: Connection, job_id: int, owner: str | None) -> tuple[bytes | None, str | None]:
    """Return ``(inline bytes, blob key)`` of a job's outcome; 404 if it has none."""
    _owned_job(conn, job_id, owner)
    row = conn.execute(
        select(jobs.c.result, jobs.c.result_blob, jobs.c.state).where(jobs.c.id == job_id)
    ).one()
    if row.result is None and row.result_blob is None:
        state = row.state
        hint = "it has not ended yet" if JobState(state) not in TERMINAL_STATES else "it has none"
        raise NotFound(f"job {job_id} has no result: {hint} (state {state})")
    return row.result, row.result_blob


def job_payload(conn: Connection, job_id: int) -> tuple[bytes | None, str | None, str]:
    """A job's payload: ``(inline bytes, blob key, kind)``."""
    row = conn.execute(
        select(jobs.c.payload, jobs.c.payload_blob, jobs.c.kind).where(jobs.c.id == job_id)
    ).one()
    return row.payload, row.payload_blob, row.kind


def job_input(conn: Connection, job_id: int, parent_id: int) -> tuple[bytes | None, str | None]:
    """Return ``(inline bytes, blob key)`` of the outcome of ``parent_id``, an input of
    ``job_id``; 404 if it is not one, or has no result."""
    inputs = conn.execute(select(jobs.c.inputs).where(jobs.c.id == job_id)).scalar_one_or_none()
    if parent_id not in parse_ids(inputs):
        raise NotFound(f"job {parent_id} is not an input of job {job_id}")
    row = conn.execute(
        select(jobs.c.result, jobs.c.result_blob, jobs.c.state).where(jobs.c.id == parent_id)
    ).one()
    if row.state != JobState.FINISHED.value or (row.result is None and row.result_blob is None):
        raise NotFound(f"input job {parent_id} of job {job_id} has no result (state {row.state})")
    return row.result, row.result_blob


#: some job takes this one's result as an input
_FEEDS = (
    exists().where(job_deps.c.parent_id == jobs.c.id, job_deps.c.input.is_(True)).label("feeds")
)


def event_head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())


def events_since(
    conn: Connection,
    owner: str,
    since: int,
    terminal_only: bool,
    result_limit: int,
    limit: int = 5000,
) -> tuple[list[JobEvent], int]:
    """Events of ``owner`` after ``since`` and the sequence number scanned up to.

    Small results of final states ride along. Filtering for final states happens here, not
    in SQL, so the cursor moves past skipped events and they are never scanned twice.
    """
    rows = conn.execute(
        select(events)
        .where(events.c.owner == owner, events.c.id > since)
        .order_by(events.c.id)
        .limit(limit)
    ).all()
    cursor = rows[-1].id if rows else since
    if terminal_only:
        rows = [r for r in rows if r.state in _TERMINAL]
    ended = [r.job_id for r in rows if r.state in _TERMINAL]
    results: dict[int, AnyRow] = {}
    if ended:
        results = {
            r.id: r
            for r in conn.execute(
                select(jobs.c.id, jobs.c.result, jobs.c.result_size, _FEEDS).where(
                    jobs.c.id.in_(ended)
                )
            )
        }
    out = []
    for r in rows:
        inline = size = None
        res = results.get(r.job_id) if r.state in _TERMINAL else None
        if res is not None:
            size = res.result_size
            # a result that feeds other jobs is theirs, not the notebook's: not inlined
            small = res.result is not None and len(res.result) <= result_limit
            if small and not res.feeds:
                inline = res.result
        out.append(
            # our own rows: construct without re-validating, enums made by hand (hot path)
            JobEvent.model_construct(
                seq=r.id,
                job_id=r.job_id,
                state=JobState(r.state),
                time=r.time,
                attempt=r.attempt,
                error_class=ErrorClass(r.error_class) if r.error_class else None,
                reason=r.reason,
                result=inline,
                result_size=size,
            )
        )
    return out, cursor


def logs_since(conn: Connection, job_id: int, owner: str | None, since: int, limit: int) -> LogPage:
    row = _owned_job(conn, job_id, owner)
    lines = [
        LogLine(
            seq=r.id,
            job_id=r.job_id,
            attempt=r.attempt,
            stream=r.stream,
            time=r.time,
            text=r.text,
        )
        for r in conn.execute(
            select(log_lines)
            .where(log_lines.c.job_id == job_id, log_lines.c.id > since)
            .order_by(log_lines.c.id)
            .limit(limit)
        )
    ]
    next_seq = lines[-1].seq if lines else since
    # ended only once every line is out: a full page may have more behind it
    ended = row.state in _TERMINAL and len(lines) < limit
    return LogPage(lines=lines, next_seq=next_seq, ended=ended)


def log_tail(conn: Connection, job_id: int, lines: int) -> list[str]:
    """The texts of a job's last ``lines`` log lines, oldest first (no owner check: the
    caller has one)."""
    newest = conn.execute(
        select(log_lines.c.text)
        .where(log_lines.c.job_id == job_id)
        .order_by(log_lines.c.id.desc())
        .limit(lines)
    )
    return [r.text for r in newest][::-1]


def list_pilots(conn: Connection, live_only: bool) -> list[PilotInfo]:
    query = select(pilots).order_by(pilots.c.id.desc()).limit(1000)
    if live_only:
        query = query.where(pilots.c.state.in_(LIVE_PILOT_STATES))
    rows = conn.execute(query).all()
    running = Counter(
        conn.execute(
            select(jobs.c.pilot_id).where(
                jobs.c.pilot_id.in_([r.id for r in rows]), jobs.c.state == JobState.RUNNING.value
            )
        ).scalars()
    )
    return [
        PilotInfo(
            id=r.id,
            site=r.site,
            state=r.state,
            hostname=r.hostname,
            batch_id=r.batch_id,
            cores=r.cores or 0,
            memory=r.memory or 0,
            gpus=r.gpus or 0,
            registered=_dt(r.registered_at),
            last_seen=_dt(r.last_seen),
            running_jobs=running.get(r.id, 0),
            reason=r.reason,
        )
        for r in rows
    ]


def pilot_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Pilots per site and state, live ones only."""
    counts: dict[str, dict[str, int]] = {}
    for site, state, n in conn.execute(
        select(pilots.c.site, pilots.c.state, func.count())
        .where(pilots.c.state.in_(LIVE_PILOT_STATES))
        .group_by(pilots.c.site, pilots.c.state)
    ):
        counts.setdefault(site, {})[state] = n
    return counts
