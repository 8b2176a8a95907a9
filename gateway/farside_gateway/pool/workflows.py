"""Workflow runs: a body job that submits children, journalled so it can run again.

The body is a job of kind ``workflow``. When a pilot takes it, the gateway issues a token
for that attempt alone (:func:`body_token`); the body submits its children with it, each
under a journal key (its place in the body and a digest of the call). A second submission
with a key the run has used returns the first job (:func:`submit_jobs`), so a body that runs
again — its pilot lost, the run paused and resumed, or retried — finds every call it made
before, finished or still running, and nothing is evaluated twice.

Commands: *pause* cancels the body and keeps the children running (their results are
journalled); *resume* starts the body again as a new job; *kill* cancels the body and
every unfinished child; *retry* (after a failure or a kill) drops the failed and cancelled
children from the journal, so they are submitted afresh, and starts the body again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from farside_protocol import Conflict, NotFound
from farside_protocol.models import JobSpec, Resources
from farside_protocol.states import TERMINAL_STATES
from farside_protocol.workflows import (
    WorkflowInfo,
    WorkflowSpec,
    WorkflowStarted,
    WorkflowState,
    workflow_state,
)

from ..auth.tokens import issue_token
from ..db.schema import AnyRow, jobs, tokens, workflows
from .submit import NewJob, Submitter, cancel_jobs, submit_jobs
from .transaction import PoolTransaction

BODY = "workflow"
#: a body token outlives its job's walltime by this much (the attempt's end revokes it)
TOKEN_MARGIN = 3600.0


def _time(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, UTC) if t is not None else None


def body_spec(spec: WorkflowSpec) -> JobSpec:
    return JobSpec(
        kind=BODY,
        payload=b"",  # placed by the caller (inline or as a blob)
        name=spec.name,
        resources=spec.resources,
        sites=spec.sites,
        env=spec.env,
        priority=spec.priority,
    )


def start_workflow(tx: PoolTransaction, who: Submitter, name: str, body: NewJob) -> WorkflowStarted:
    """Record a run and submit its body."""
    workflow_id = tx.conn.execute(
        insert(workflows)
        .values(
            name=name,
            owner=who.owner,
            share_group=who.share_group,
            body_job_id=0,
            body_runs=1,
            paused=False,
            created_at=tx.now,
        )
        .returning(workflows.c.id)
    ).scalar_one()
    return WorkflowStarted(id=workflow_id, body_job_id=_new_body(tx, workflow_id, body))


def _new_body(tx: PoolTransaction, workflow_id: int, body: NewJob) -> int:
    row = tx.conn.execute(select(workflows).where(workflows.c.id == workflow_id)).one()
    submitter = Submitter(row.owner, row.share_group, workflow_id=workflow_id)
    (job_id,) = submit_jobs(tx, submitter, [body])
    tx.conn.execute(
        update(workflows).where(workflows.c.id == workflow_id).values(body_job_id=job_id)
    )
    return job_id


def _run(conn: Connection, workflow_id: int, owner: str | None) -> AnyRow:
    query = select(workflows).where(workflows.c.id == workflow_id)
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no workflow run {workflow_id} of yours; `farside workflows` lists them")
    return row


def _body(conn: Connection, run: AnyRow) -> AnyRow:
    return conn.execute(select(jobs).where(jobs.c.id == run.body_job_id)).one()


def _info(conn: Connection, run: AnyRow) -> WorkflowInfo:
    body = _body(conn, run)
    counts = conn.execute(
        select(jobs.c.state, func.count())
        .where(jobs.c.workflow_id == run.id, jobs.c.kind != BODY)
        .group_by(jobs.c.state)
    ).all()
    state = workflow_state(body.state, run.paused)
    return WorkflowInfo(
        id=run.id,
        name=run.name,
        owner=run.owner,
        state=state,
        body_job_id=body.id,
        body_runs=run.body_runs,
        attempts=body.attempt,
        children={s: n for s, n in counts},
        report=json.loads(run.report) if run.report else {},
        error=body.error if state in {WorkflowState.FAILED, WorkflowState.CANCELLED} else None,
        created=_time(run.created_at) or datetime.now(UTC),
        ended=_time(body.ended_at) if state.terminal else None,
    )


def workflow_info(conn: Connection, workflow_id: int, owner: str | None) -> WorkflowInfo:
    return _info(conn, _run(conn, workflow_id, owner))


def list_workflows(
    conn: Connection, owner: str | None, name: str | None, limit: int
) -> list[WorkflowInfo]:
    """Runs newest first; ``name``: only runs of that workflow."""
    query = select(workflows).order_by(workflows.c.id.desc()).limit(limit)
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    if name is not None:
        query = query.where(workflows.c.name == name)
    return [_info(conn, run) for run in conn.execute(query).all()]


def record_report(
    tx: PoolTransaction, workflow_id: int, owner: str, values: dict[str, Any]
) -> None:
    run = _run(tx.conn, workflow_id, owner)
    tx.conn.execute(
        update(workflows).where(workflows.c.id == run.id).values(report=json.dumps(values))
    )
    # watchers (the widget, run.progress(), the monitor) are woken by their owner's events
    tx.tell_owner(run.owner)


def body_tokens(conn: Connection, rows: list[AnyRow]) -> dict[int, str]:
    """Tokens for the workflow bodies among jobs just handed to a pilot, by job id."""
    return {row.id: body_token(conn, row) for row in rows if row.kind == BODY}


def body_token(conn: Connection, row: AnyRow) -> str:
    """A token for attempt ``row.attempt`` of body job ``row``: it acts for the run's owner
    within the run (api.scope) and dies with the attempt (auth.tokens.lookup_token)."""
    run = conn.execute(
        select(workflows.c.id, workflows.c.share_group).where(workflows.c.id == row.workflow_id)
    ).one()
    conn.execute(tokens.delete().where(tokens.c.job_id == row.id))  # earlier attempts'
    return issue_token(
        conn,
        "user",
        row.owner,
        ttl=row.walltime + TOKEN_MARGIN,
        description=f"workflow {run.id}: body job {row.id} attempt {row.attempt}",
        groups=[run.share_group] if run.share_group else [],
        job_id=row.id,
        job_attempt=row.attempt,
    )


def _unfinished_body(conn: Connection, run: AnyRow) -> AnyRow | None:
    body = _body(conn, run)
    return None if body.state in {s.value for s in TERMINAL_STATES} else body


def pause_workflow(tx: PoolTransaction, workflow_id: int, owner: str | None) -> WorkflowInfo:
    """Stop the body; the children it submitted keep running and stay in the journal."""
    run = _run(tx.conn, workflow_id, owner)
    if run.paused:
        return _info(tx.conn, run)
    if _unfinished_body(tx.conn, run) is None:
        raise Conflict(f"workflow run {workflow_id} has ended; retry it instead of pausing")
    tx.conn.execute(update(workflows).where(workflows.c.id == run.id).values(paused=True))
    reason = "the workflow run was paused"
    cancel_jobs(tx, owner, [run.body_job_id], None, reason=reason)
    return workflow_info(tx.conn, workflow_id, owner)


def resume_workflow(tx: PoolTransaction, workflow_id: int, owner: str | None) -> WorkflowInfo:
    """Start a paused run's body again; its calls made before return from the journal."""
    run = _run(tx.conn, workflow_id, owner)
    if not run.paused:
        raise Conflict(f"workflow run {workflow_id} is not paused")
    tx.conn.execute(update(workflows).where(workflows.c.id == run.id).values(paused=False))
    _restart(tx, run)
    return workflow_info(tx.conn, workflow_id, owner)


def kill_workflow(tx: PoolTransaction, workflow_id: int, owner: str | None) -> WorkflowInfo:
    """Cancel the body and every child that has not ended."""
    run = _run(tx.conn, workflow_id, owner)
    live = tx.conn.execute(
        select(jobs.c.id).where(
            jobs.c.workflow_id == run.id,
            jobs.c.state.not_in([s.value for s in TERMINAL_STATES]),
        )
    ).all()
    tx.conn.execute(update(workflows).where(workflows.c.id == run.id).values(paused=False))
    if live:
        reason = "the workflow run was killed"
        cancel_jobs(tx, owner, [r.id for r in live], None, reason=reason)
    return workflow_info(tx.conn, workflow_id, owner)


def retry_workflow(tx: PoolTransaction, workflow_id: int, owner: str | None) -> WorkflowInfo:
    """Run an ended, unsuccessful run's body again; failed and cancelled children leave the
    journal (they run again), finished ones are kept."""
    run = _run(tx.conn, workflow_id, owner)
    info = _info(tx.conn, run)
    if info.state not in {WorkflowState.FAILED, WorkflowState.CANCELLED}:
        raise Conflict(
            f"workflow run {workflow_id} is {info.state}: only failed or killed runs are "
            "retried (pause and resume a running one)"
        )
    tx.conn.execute(
        update(jobs)
        .where(
            and_(
                jobs.c.workflow_id == run.id,
                jobs.c.kind != BODY,
                jobs.c.state.in_(["failed", "cancelled"]),
            )
        )
        .values(journal_key=None)
    )
    _restart(tx, run)
    return workflow_info(tx.conn, workflow_id, owner)


def _restart(tx: PoolTransaction, run: AnyRow) -> int:
    old = _body(tx.conn, run)
    spec = JobSpec(
        kind=BODY,
        payload=b"",  # the stored call is reused as it is (inline or blob)
        name=old.name,
        resources=Resources(
            cores=old.cores, memory=old.memory, walltime=old.walltime, gpus=old.gpus
        ),
        sites=[s for s in (old.site_order or "").split(",") if s],
        env=old.env,
        priority=old.priority,
    )
    body = NewJob(spec, old.payload, old.payload_blob, old.payload_size)
    job_id = _new_body(tx, run.id, body)
    tx.conn.execute(
        update(workflows)
        .where(workflows.c.id == run.id)
        .values(body_runs=workflows.c.body_runs + 1)
    )
    return job_id
