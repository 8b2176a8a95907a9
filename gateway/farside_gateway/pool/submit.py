"""Submitting and cancelling jobs, and the dependency bookkeeping both need."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)

from farside_protocol import ErrorClass, InvalidRequest, JobState, NotFound
from farside_protocol.models import JobSpec
from farside_protocol.states import ACTIVE_STATES, TERMINAL_STATES

from ..db.schema import attempts, job_deps, jobs
from .transaction import REF_COLUMNS, JobRef, PoolTransaction

S = JobState
_FAILED_PARENT = {S.FAILED.value, S.CANCELLED.value}
#: PostgreSQL advisory lock between submitting children and settling their parents
DEPS_LOCK = 0x66646570


def _lock_deps(conn: Connection, exclusive: bool) -> None:
    """Order a submission with parents against parents ending, on PostgreSQL.

    A submission reads its parents' states and inserts its links; a parent ending looks
    its children up by those links. Run side by side, neither sees the other's work and
    the child waits forever. Submissions take this lock exclusively, parents ending take
    it shared (they do not wait for one another). A submission takes no row lock a
    settling parent holds, so the two cannot deadlock. SQLite has a single writer already.
    """
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(text(f"SELECT {fn}(:key)"), {"key": DEPS_LOCK})


@dataclass(frozen=True)
class NewJob:
    """A validated spec whose payload is already placed (inline bytes or a blob key)."""

    spec: JobSpec
    payload: bytes | None
    payload_blob: str | None
    payload_size: int


@dataclass(frozen=True)
class Submitter:
    """Who submits, and the gateway's rules that shape what is stored."""

    owner: str
    share_group: str | None = None
    scout_threshold: int = 0  # maps of more than this many jobs send scouts; 0: never
    scout_count: int = 0
    #: the workflow run whose jobs these are (its body's token submits them); their
    #: journal keys name calls the run has made before (see pool.workflows)
    workflow_id: int | None = None


def _sites_column(sites: list[str]) -> str | None:
    return "," + ",".join(sorted(set(sites))) + "," if sites else None


def _order_column(sites: list[str]) -> str | None:
    return ",".join(dict.fromkeys(sites)) if sites else None


def _tunable(spec: JobSpec) -> str | None:
    """Resources the user left to the gateway: those not given explicitly."""
    left = [r for r in ("memory", "walltime") if r not in spec.resources.model_fields_set]
    return ",".join(left) or None


def _scout_roles(specs: list[JobSpec], who: Submitter) -> list[int]:
    """1 for a scout, 2 for a job that waits for its map's scouts, 0 otherwise.

    A map is the jobs of one request that share a group; only its jobs with something
    to tune and no parents take part (a dependent job waits for its parents anyway).
    """
    roles = [0] * len(specs)
    if who.scout_count <= 0:
        return roles
    members: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        if spec.group and not spec.after and _tunable(spec):
            members.setdefault(spec.group, []).append(index)
    for indexes in members.values():
        if len(indexes) > who.scout_threshold:
            for n, index in enumerate(indexes):
                roles[index] = 1 if n < who.scout_count else 2
    return roles


def _journalled(conn: Connection, who: Submitter, new_jobs: list[NewJob]) -> dict[str, int]:
    """The jobs a workflow run already made under the journal keys of ``new_jobs``."""
    keys = {job.spec.journal_key for job in new_jobs if job.spec.journal_key}
    if not keys:
        return {}
    if who.workflow_id is None:
        raise InvalidRequest(
            "journal_key is for the calls of a workflow body; submit without it, or make "
            "the calls inside an @farside.workflow function"
        )
    found = conn.execute(
        select(jobs.c.id, jobs.c.journal_key).where(
            jobs.c.workflow_id == who.workflow_id, jobs.c.journal_key.in_(keys)
        )
    ).all()
    return {row.journal_key: row.id for row in found}


def submit_jobs(tx: PoolTransaction, who: Submitter, new_jobs: list[NewJob]) -> list[int]:
    """Insert jobs; a job with unfinished parents, or waiting for scouts, is ``pending``.

    ``inputs`` (parents whose results a job takes) are a subset of ``after``, which the
    spec checks; so the ownership check of ``after`` covers them too.

    A job whose journal key its workflow run has used before is not inserted: its id is
    the earlier job's (a body running again makes the same calls; see pool.workflows).
    """
    return submit_journalled(tx, who, new_jobs)[0]


def submit_journalled(
    tx: PoolTransaction, who: Submitter, new_jobs: list[NewJob]
) -> tuple[list[int], list[int]]:
    """:func:`submit_jobs`, and also which of the ids came from the run's journal."""
    journal = _journalled(tx.conn, who, new_jobs)
    earlier = set(journal.values())
    fresh: list[NewJob] = []
    for job in new_jobs:
        key = job.spec.journal_key
        if key is None or key not in journal:
            fresh.append(job)
            if key is not None:
                journal[key] = -1  # a second call with this key in the request reuses it
    ids = iter(_insert_jobs(tx, who, fresh) if fresh else [])
    result = []
    for job in new_jobs:
        key = job.spec.journal_key
        if key is None or journal[key] == -1:
            job_id = next(ids)
            if key is not None:
                journal[key] = job_id
            result.append(job_id)
        else:
            result.append(journal[key])
    return result, sorted(earlier)


def _insert_jobs(tx: PoolTransaction, who: Submitter, new_jobs: list[NewJob]) -> list[int]:
    conn, owner, now = tx.conn, who.owner, tx.now
    parent_ids = {p for job in new_jobs for p in job.spec.after}
    parent_state: dict[int, str] = {}
    if parent_ids:
        _lock_deps(conn, exclusive=True)
        found = conn.execute(
            select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(parent_ids), jobs.c.owner == owner)
        ).all()
        parent_state = {row.id: row.state for row in found}
        missing = sorted(parent_ids - parent_state.keys())
        if missing:
            raise InvalidRequest(
                f"dependency job(s) {missing[:20]} not found among your jobs; "
                "`after` may only name jobs you submitted",
                {"job_ids": missing},
            )
    rows: list[dict[str, Any]] = []
    initial: list[tuple[JobState, str | None]] = []
    roles = _scout_roles([job.spec for job in new_jobs], who)
    for job, role in zip(new_jobs, roles, strict=True):
        spec = job.spec
        parents = set(spec.after)
        dead = sorted(p for p in parents if parent_state[p] in _FAILED_PARENT)
        left = sum(1 for p in parents if parent_state[p] != S.FINISHED.value)
        if dead:
            state, reason = S.FAILED, f"dependency job {dead[0]} {parent_state[dead[0]]}"
        elif left or role == 2:
            state, reason = S.PENDING, None
        else:
            state, reason = S.QUEUED, None
        initial.append((state, reason))
        res = spec.resources
        rows.append(
            {
                "owner": owner,
                "name": spec.name,
                "group_name": spec.group,
                "kind": spec.kind,
                "state": state.value,
                "priority": spec.priority,
                "cores": res.cores,
                "memory": res.memory,
                "walltime": res.walltime,
                "gpus": res.gpus,
                "gpu_model": res.gpu_model if res.gpus else None,
                "arch": res.arch,
                "env": spec.env,
                "sites": _sites_column(spec.sites),
                "site_order": _order_column(spec.sites),
                "share_group": who.share_group,
                "tunable": _tunable(spec),
                "scout": role,
                "adjusted": None,
                "resource_failures": 0,
                "max_attempts": spec.max_attempts,
                "user_failures": 0,
                "system_failures": 0,
                "attempt": 0,
                "parents_left": left,
                "inputs": ",".join(map(str, dict.fromkeys(spec.inputs))) or None,
                "payload": job.payload,
                "payload_blob": job.payload_blob,
                "payload_size": job.payload_size,
                "created_at": now,
                "queued_at": now if state is S.QUEUED else None,
                "ended_at": now if state is S.FAILED else None,
                "error_class": ErrorClass.DEPENDENCY.value if reason else None,
                "error": reason,
                "workflow_id": who.workflow_id,
                "journal_key": spec.journal_key,
            }
        )
    result = conn.execute(insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), rows)
    ids = [row.id for row in result]
    dep_rows = [
        {"child_id": job_id, "parent_id": parent, "input": parent in job.spec.inputs}
        for job_id, job in zip(ids, new_jobs, strict=True)
        for parent in set(job.spec.after)
    ]
    if dep_rows:
        conn.execute(insert(job_deps), dep_rows)
    for job_id, (state, reason) in zip(ids, initial, strict=True):
        error_class = ErrorClass.DEPENDENCY if reason else None
        tx.created(job_id, owner, state, error_class=error_class, reason=reason)
    return ids


def release_children(tx: PoolTransaction, finished_ids: list[int]) -> None:
    """Parents finished: children whose parents have all finished become queued."""
    if not finished_ids:
        return
    conn = tx.conn
    _lock_deps(conn, exclusive=False)
    links = conn.execute(
        select(job_deps.c.child_id).where(job_deps.c.parent_id.in_(finished_ids))
    ).all()
    if not links:
        return
    counts = Counter(row.child_id for row in links)
    conn.execute(
        update(jobs)
        .where(jobs.c.id == bindparam("_id"), jobs.c.state == S.PENDING.value)
        .values(parents_left=jobs.c.parents_left - bindparam("_n")),
        [{"_id": child, "_n": n} for child, n in counts.items()],
    )
    ready = conn.execute(
        select(*REF_COLUMNS).where(
            jobs.c.id.in_(list(counts)),
            jobs.c.state == S.PENDING.value,
            jobs.c.parents_left <= 0,
        )
    ).all()
    tx.move([JobRef.of(row) for row in ready], S.QUEUED, values={"queued_at": tx.now})


def fail_children(tx: PoolTransaction, dead_ids: list[int]) -> None:
    """Parents failed or were cancelled: their waiting descendants fail, saying which parent."""
    if dead_ids:
        _lock_deps(tx.conn, exclusive=False)
    frontier = list(dead_ids)
    while frontier:
        links = tx.conn.execute(
            select(*REF_COLUMNS, job_deps.c.parent_id)
            .select_from(job_deps.join(jobs, jobs.c.id == job_deps.c.child_id))
            .where(job_deps.c.parent_id.in_(frontier), jobs.c.state == S.PENDING.value)
        ).all()
        failed: dict[int, tuple[JobRef, int]] = {}
        for row in links:
            failed.setdefault(row.id, (JobRef.of(row), row.parent_id))
        for child, parent in failed.values():
            reason = f"dependency job {parent} did not finish"
            tx.move(
                [child],
                S.FAILED,
                error_class=ErrorClass.DEPENDENCY,
                reason=reason,
                values={
                    "ended_at": tx.now,
                    "error_class": ErrorClass.DEPENDENCY.value,
                    "error": reason,
                },
            )
        frontier = list(failed)


def cancel_jobs(
    tx: PoolTransaction,
    owner: str | None,
    job_ids: list[int],
    group: str | None,
    reason: str = "cancelled by the user",
) -> list[int]:
    """Cancel jobs of ``owner`` (None: an admin, any owner). Final jobs are left as they are."""
    if not job_ids and group is None:
        raise InvalidRequest("name the jobs to cancel: give job_ids or a group")
    conditions: list[ColumnElement[bool]] = []
    if job_ids:
        conditions.append(jobs.c.id.in_(job_ids))
    if group is not None:
        conditions.append(jobs.c.group_name == group)
    query = select(*REF_COLUMNS, jobs.c.pilot_id).where(or_(*conditions))
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    rows = tx.conn.execute(query).all()
    missing = sorted(set(job_ids) - {row.id for row in rows})
    if missing:
        raise NotFound(f"job(s) {missing[:20]} not found", {"job_ids": missing})
    live = [row for row in rows if S(row.state) not in TERMINAL_STATES]
    if not live:
        return []
    ids = [row.id for row in live]
    tx.move(
        [JobRef.of(row) for row in live],
        S.CANCELLED,
        error_class=ErrorClass.CANCELLED,
        reason=reason,
        values={
            "ended_at": tx.now,
            "lease_expires": None,
            "error_class": ErrorClass.CANCELLED.value,
            "error": reason,
        },
    )
    active = [row for row in live if S(row.state) in ACTIVE_STATES]
    if active:
        tx.conn.execute(
            update(attempts)
            .where(
                and_(
                    attempts.c.job_id == bindparam("_id"),
                    attempts.c.number == bindparam("_n"),
                )
            )
            .values(state=S.CANCELLED.value, ended_at=tx.now),
            [{"_id": row.id, "_n": row.attempt} for row in active],
        )
        tx.tell_pilots(row.pilot_id for row in active if row.pilot_id is not None)
    fail_children(tx, ids)
    return ids
