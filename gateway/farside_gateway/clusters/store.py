"""The database side of clusters: their rows, and their worker leases in the pool.

Every function takes a connection and runs inside the caller's transaction. A worker lease
is a job of kind ``dask-worker`` owned by the cluster's owner, with ``group_name`` = the
cluster's name and ``name`` = the Dask worker's name (``<group>-<hex>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, select, update

from farside_protocol import Conflict, JobState, NotFound
from farside_protocol.clusters import (
    ClusterGroup,
    ClusterInfo,
    ClusterWorker,
    DaskWorkerLease,
    WorkerGroupSpec,
    group_of,
    worker_name,
)
from farside_protocol.models import DASK_WORKER, JobSpec
from farside_protocol.states import TERMINAL_STATES

from ..db.schema import AnyRow, clusters, jobs
from ..pool.submit import NewJob, Submitter, cancel_jobs, submit_jobs
from ..pool.transaction import PoolTransaction

KIND = DASK_WORKER
LIVE = ("starting", "running")
#: ended leases listed with a cluster, newest first (why workers died)
ENDED_SHOWN = 20
WAITING = ("pending", "queued")


def _time(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def load_groups(row: AnyRow) -> dict[str, WorkerGroupSpec]:
    return {
        name: WorkerGroupSpec.model_validate(spec) for name, spec in json.loads(row.groups).items()
    }


def dump_groups(groups: dict[str, WorkerGroupSpec]) -> str:
    return json.dumps({name: spec.model_dump(mode="json") for name, spec in groups.items()})


def insert_cluster(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(clusters).values(**values))


def get_cluster(conn: Connection, name: str, owner: str | None) -> AnyRow:
    query = select(clusters).where(clusters.c.name == name)
    if owner is not None:
        query = query.where(clusters.c.owner == owner)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no cluster {name!r} of yours; gw.clusters() lists them")
    return row


def set_cluster(conn: Connection, /, name: str, **values: Any) -> None:
    conn.execute(update(clusters).where(clusters.c.name == name).values(**values))


def live_clusters(
    conn: Connection, owner: str | None = None, instance: str | None = None
) -> list[AnyRow]:
    query = select(clusters).where(clusters.c.state.in_((*LIVE, "stopping")))
    if owner is not None:
        query = query.where(clusters.c.owner == owner)
    if instance is not None:
        query = query.where(clusters.c.instance == instance)
    return list(conn.execute(query.order_by(clusters.c.created_at)).all())


def list_clusters(
    conn: Connection, owner: str | None, ended: bool, client_timeout: float
) -> list[ClusterInfo]:
    query = select(clusters).order_by(clusters.c.created_at.desc()).limit(500)
    if owner is not None:
        query = query.where(clusters.c.owner == owner)
    if not ended:
        query = query.where(clusters.c.state.in_((*LIVE, "stopping")))
    return [cluster_info(conn, row, client_timeout) for row in conn.execute(query).all()]


def _leases_of(row: AnyRow) -> ColumnElement[bool]:
    """SQL: the worker leases of cluster ``row`` (ix_jobs_owner_group finds them)."""
    return and_(jobs.c.owner == row.owner, jobs.c.group_name == row.name, jobs.c.kind == KIND)


def lease_rows(conn: Connection, row: AnyRow, live_only: bool) -> list[AnyRow]:
    cols = (jobs.c.id, jobs.c.name, jobs.c.state, jobs.c.site, jobs.c.error, jobs.c.error_class)
    where = _leases_of(row)
    live_states = [s.value for s in JobState if s not in TERMINAL_STATES]
    live = conn.execute(
        select(*cols).where(where, jobs.c.state.in_(live_states)).order_by(jobs.c.id)
    ).all()
    if live_only:
        return list(live)
    ended = conn.execute(
        select(*cols)
        .where(where, jobs.c.state.not_in(live_states))
        .order_by(jobs.c.id.desc())
        .limit(ENDED_SHOWN)
    ).all()
    return list(live) + list(ended)


def retiring(row: AnyRow) -> set[str]:
    """Workers the owner asked to stop (``stop_workers``) whose leases may still be live."""
    return set(json.loads(row.retiring or "[]"))


def dump_retiring(names: set[str]) -> str | None:
    return json.dumps(sorted(names)) if names else None


def failures(conn: Connection, row: AnyRow) -> dict[str, int]:
    """Leases that ended in an error (not cancelled, not finished), by group."""
    found = conn.execute(
        select(jobs.c.name, func.count())
        .where(_leases_of(row), jobs.c.state == JobState.FAILED.value)
        .group_by(jobs.c.name)
    ).all()
    counts: dict[str, int] = {}
    for name, count in found:
        counts[group_of(name)] = counts.get(group_of(name), 0) + count
    return counts


def cluster_info(conn: Connection, row: AnyRow, client_timeout: float) -> ClusterInfo:
    failed = failures(conn, row)
    workers = [
        ClusterWorker(
            name=lease.name,
            job_id=lease.id,
            group=group_of(lease.name),
            state=JobState(lease.state),
            site=lease.site,
            error=lease.error,
        )
        for lease in lease_rows(conn, row, live_only=False)
    ]
    return ClusterInfo(
        name=row.name,
        owner=row.owner,
        state=row.state,
        reason=row.reason,
        scheduler_address=row.scheduler_address,
        dashboard_link=row.dashboard_link,
        groups=[
            ClusterGroup(name=name, spec=spec, failures=failed.get(name, 0))
            for name, spec in load_groups(row).items()
        ],
        workers=workers,
        idle_timeout=row.idle_timeout,
        client_timeout=client_timeout,
        created=_time(row.created_at),
        last_client_seen=_time(row.last_client_seen),
    )


@dataclass(frozen=True)
class LeaseTerms:
    """What every lease of a cluster shares."""

    death_timeout: float


def _lease_spec(row: AnyRow, group: str, spec: WorkerGroupSpec, terms: LeaseTerms) -> JobSpec:
    name = worker_name(group)
    walltime = spec.walltime
    lease = DaskWorkerLease(
        cluster=row.name,
        group=group,
        name=name,
        scheduler_address=row.scheduler_address,
        tls_cert=row.tls_cert,
        tls_key=row.tls_key,
        nthreads=spec.cores,
        memory_limit=spec.memory,
        resources={"GPU": float(spec.gpus)} if spec.gpus else {},
        death_timeout=terms.death_timeout,
        # retire before the pilot's walltime watch would kill it mid-task
        lifetime=max(1.0, walltime - min(60.0, walltime * 0.1)),
    )
    return JobSpec(
        kind=KIND,
        payload=lease.model_dump_json().encode(),
        name=name,
        group=row.name,
        resources=spec.resources(),
        sites=spec.sites,
        env=spec.env,
        max_attempts=1,
    )


def probe_spec(spec: WorkerGroupSpec) -> JobSpec:
    """A lease's job spec without a cluster, to ask the broker whether any site fits it."""
    return JobSpec(
        kind=KIND, payload=b"", resources=spec.resources(), sites=spec.sites, env=spec.env
    )


def reconcile(
    tx: PoolTransaction, name: str, terms: LeaseTerms, max_failures: int
) -> dict[int, str]:
    """Bring a running cluster's leases to its groups' targets: submit what is missing,
    cancel waiting surplus. Running surplus is returned (job id → worker name), not
    cancelled: the manager retires those workers on the scheduler first, so their results
    move to other workers, and then cancels them. Surplus goes in this order: the workers
    the owner named (``retiring``: adapt picks idle ones), then the newest waiting leases,
    then the newest running ones.

    A group whose leases failed ``max_failures`` times is not refilled; the cluster's
    reason says why.
    """
    conn = tx.conn
    row = get_cluster(conn, name, None)
    if row.state != "running":
        return {}
    groups = load_groups(row)
    live = lease_rows(conn, row, live_only=True)
    failed = failures(conn, row)
    named = retiring(row)
    new: list[NewJob] = []
    surplus: list[int] = []
    running_surplus: dict[int, str] = {}
    stuck: list[str] = []
    for group, spec in groups.items():
        mine = [lease for lease in live if group_of(lease.name) == group]
        missing = spec.workers - len(mine)
        if missing > 0 and failed.get(group, 0) >= max_failures:
            stuck.append(group)
        elif missing > 0:
            for _ in range(missing):
                job = _lease_spec(row, group, spec, terms)
                new.append(NewJob(job, job.payload, None, len(job.payload)))
        elif missing < 0:
            order = sorted(
                mine,
                key=lambda lease: (lease.name not in named, lease.state not in WAITING, -lease.id),
            )
            for lease in order[:-missing]:
                if lease.state in WAITING:
                    surplus.append(lease.id)
                else:
                    running_surplus[lease.id] = lease.name
    still_live = named & {lease.name for lease in live}
    if still_live != named:  # the others' leases have ended
        set_cluster(conn, name, retiring=dump_retiring(still_live))
    if new:
        submit_jobs(tx, Submitter(row.owner, row.share_group), new)
    if surplus:
        cancel_jobs(tx, row.owner, surplus, None, reason=f"cluster {name} scaled down")
    if stuck:
        reason = (
            f"workers of group {', '.join(stuck)} failed {max_failures} times; not replacing "
            "them (see gw.logs(cluster=...) or cluster.workers_info())"
        )
        if row.reason != reason:
            set_cluster(conn, name, reason=reason)
    return running_surplus


def end_leases(tx: PoolTransaction, row: AnyRow, why: str) -> list[int]:
    ids = [lease.id for lease in lease_rows(tx.conn, row, live_only=True)]
    if ids:
        cancel_jobs(tx, row.owner, ids, None, reason=why)
    return ids


def check_caps(
    conn: Connection,
    owner: str,
    name: str | None,
    groups: dict[str, WorkerGroupSpec],
    max_clusters: int,
    max_cores: int | None,
) -> None:
    """Refuse a new cluster (``name`` None) or new targets beyond the user's limits."""
    others = [row for row in live_clusters(conn, owner=owner) if row.name != name]
    if name is None and len(others) >= max_clusters:
        raise Conflict(
            f"you have {len(others)} clusters running, the most allowed is {max_clusters}; "
            "close one first (gw.clusters() lists them, cluster.close() stops one)"
        )
    if max_cores is None:
        return
    used = sum(s.workers * s.cores for row in others for s in load_groups(row).values())
    wanted = sum(s.workers * s.cores for s in groups.values())
    if used + wanted > max_cores:
        raise Conflict(
            f"that asks for {wanted} worker cores, and your other clusters hold {used}; the "
            f"most one user may have is {max_cores}: scale down or close a cluster"
        )
