"""What the web monitor shows, read from the pool: plain data, no Panel here.

Each function takes a connection and the owner the caller may see (None: an admin, who
sees everyone's), so the monitor's pages and their tests share one source of numbers.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from farside_protocol.models import JobDetail
from farside_protocol.states import TERMINAL_STATES, JobState

from ..db.schema import attempts, clusters, jobs, log_lines
from ..pool.queries import job_detail

#: the groups (maps, offloads, clusters' leases) a page shows, newest first
GROUPS_SHOWN = 20
#: failed attempts an error summary reads at most (the newest)
ERRORS_READ = 20_000


@dataclass
class GroupProgress:
    """One map (or offload, or cluster's worker leases): counts by state, rate, ETA."""

    group: str
    kind: str
    owner: str
    counts: dict[str, int] = field(default_factory=dict)
    first_created: float = 0.0
    last_ended: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ended(self) -> int:
        return sum(n for s, n in self.counts.items() if JobState(s) in TERMINAL_STATES)

    def rate(self, now: float) -> float | None:
        """Jobs ended per second since the group was submitted (None: none ended yet)."""
        if not self.ended:
            return None
        until = now if self.ended < self.total else (self.last_ended or now)
        return self.ended / max(until - self.first_created, 1e-3)

    def eta(self, now: float) -> float | None:
        """Seconds until the rest have ended at the rate so far (None: unknown or done)."""
        rate = self.rate(now)
        left = self.total - self.ended
        return left / rate if rate and left else None


def groups(conn: Connection, owner: str | None, limit: int = GROUPS_SHOWN) -> list[GroupProgress]:
    """The newest groups of jobs with their counts by state; jobs without a group are
    one row per owner, ``(single jobs)``."""
    newest = (
        select(jobs.c.owner, jobs.c.group_name, func.max(jobs.c.id).label("newest"))
        .group_by(jobs.c.owner, jobs.c.group_name)
        .order_by(func.max(jobs.c.id).desc())
        .limit(limit)
    )
    if owner is not None:
        newest = newest.where(jobs.c.owner == owner)
    chosen = conn.execute(newest).all()
    found: dict[tuple[str, str | None], GroupProgress] = {}
    for row in chosen:
        name = row.group_name or "(single jobs)"
        found[(row.owner, row.group_name)] = GroupProgress(name, "function", row.owner)
    if not found:
        return []
    query = (
        select(
            jobs.c.owner,
            jobs.c.group_name,
            jobs.c.kind,
            jobs.c.state,
            func.count(),
            func.min(jobs.c.created_at),
            func.max(jobs.c.ended_at),
        )
        .where(jobs.c.owner.in_({o for o, _ in found}))
        .group_by(jobs.c.owner, jobs.c.group_name, jobs.c.kind, jobs.c.state)
    )
    for owner_name, group, kind, state, n, created, ended in conn.execute(query):
        progress = found.get((owner_name, group))
        if progress is None:
            continue
        progress.kind = kind
        progress.counts[state] = progress.counts.get(state, 0) + n
        progress.first_created = min(progress.first_created or created, created)
        if ended is not None:
            progress.last_ended = max(progress.last_ended or ended, ended)
    return [found[(row.owner, row.group_name)] for row in chosen]


def live_clusters(conn: Connection, owner: str | None) -> list[tuple[str, str, str]]:
    """(name, owner, state) of the Dask clusters that have not ended."""
    query = select(clusters.c.name, clusters.c.owner, clusters.c.state).where(
        clusters.c.state.in_(["starting", "running", "stopping"])
    )
    if owner is not None:
        query = query.where(clusters.c.owner == owner)
    return [(r.name, r.owner, r.state) for r in conn.execute(query.order_by(clusters.c.name))]


@dataclass
class ErrorGroup:
    """Failed attempts that share an error class, a reason and a site."""

    error_class: str
    reason: str
    site: str
    count: int = 0
    wall_time_lost: float = 0.0
    sample_jobs: list[int] = field(default_factory=list)


_NUMBER = re.compile(r"\d+(\.\d+)?")


def reason_pattern(error: str | None) -> str:
    """An error's first line with its numbers blanked, so that failures which differ only
    in a size, a time or an id are counted together.

    >>> reason_pattern("out of memory: the job used 270.5 MiB, more than the 150 MiB")
    'out of memory: the job used # MiB, more than the # MiB'
    """
    first = (error or "(no reason given)").strip().splitlines()[0] if error else ""
    return _NUMBER.sub("#", first or "(no reason given)")[:200]


def error_summary(conn: Connection, owner: str | None, since: float) -> list[ErrorGroup]:
    """Failed attempts since ``since``, grouped by class, reason and site; most first."""
    query = (
        select(
            attempts.c.job_id,
            attempts.c.error_class,
            attempts.c.error,
            attempts.c.site,
            attempts.c.wall_time,
        )
        .join(jobs, jobs.c.id == attempts.c.job_id)
        .where(attempts.c.state == JobState.FAILED.value, attempts.c.ended_at >= since)
        .order_by(attempts.c.id.desc())
        .limit(ERRORS_READ)
    )
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    summary: dict[tuple[str, str, str], ErrorGroup] = {}
    for row in conn.execute(query):
        key = (row.error_class or "unknown", reason_pattern(row.error), row.site or "-")
        group = summary.get(key) or summary.setdefault(key, ErrorGroup(*key))
        group.count += 1
        group.wall_time_lost += row.wall_time or 0.0
        if len(group.sample_jobs) < 5 and row.job_id not in group.sample_jobs:
            group.sample_jobs.append(row.job_id)
    return sorted(summary.values(), key=lambda g: (-g.count, -g.wall_time_lost))


@dataclass
class UserUsage:
    owner: str
    share_group: str | None
    running_cores: int = 0
    running_jobs: int = 0
    queued_jobs: int = 0


def usage(conn: Connection, owner: str | None) -> list[UserUsage]:
    """Cores in use and queued work per user: what fair share weighs."""
    query = (
        select(
            jobs.c.owner,
            jobs.c.share_group,
            jobs.c.state,
            func.count(),
            func.sum(jobs.c.cores),
        )
        .where(jobs.c.state.in_(["queued", "assigned", "running"]))
        .group_by(jobs.c.owner, jobs.c.share_group, jobs.c.state)
    )
    if owner is not None:
        query = query.where(jobs.c.owner == owner)
    users: dict[str, UserUsage] = defaultdict(lambda: UserUsage("", None))
    for name, group, state, n, cores in conn.execute(query):
        user = users[name]
        user.owner, user.share_group = name, user.share_group or group
        if state == "queued":
            user.queued_jobs += n
        else:
            user.running_jobs += n
            user.running_cores += int(cores or 0)
    return sorted(users.values(), key=lambda u: (-u.running_cores, u.owner))


def queued_by_site(conn: Connection, site_names: list[str]) -> dict[str, int]:
    """Queued jobs each site may run (those that name it, or name no site)."""
    rows = conn.execute(
        select(jobs.c.sites, func.count())
        .where(jobs.c.state == JobState.QUEUED.value)
        .group_by(jobs.c.sites)
    ).all()
    demand = dict.fromkeys(site_names, 0)
    for sites, n in rows:
        for name in site_names:
            if sites is None or f",{name}," in sites:
                demand[name] += n
    return demand


@dataclass
class JobView:
    """One job for the drill-down: its detail, each attempt's usage series, its log's end."""

    detail: JobDetail
    usage: dict[int, list[tuple[float, int, float]]]
    log_tail: list[tuple[int, str, str]]  # (attempt, stream, text)


#: log lines the drill-down shows (the newest)
LOG_TAIL = 200


def job_view(conn: Connection, job_id: int, owner: str | None) -> JobView:
    """Raises NotFound for a job that does not exist or is not ``owner``'s."""
    detail = job_detail(conn, job_id, owner)
    usage = {
        number: [tuple(p) for p in json.loads(text)]
        for number, text in conn.execute(
            select(attempts.c.number, attempts.c.usage).where(
                attempts.c.job_id == job_id, attempts.c.usage.is_not(None)
            )
        )
    }
    tail = conn.execute(
        select(log_lines.c.attempt, log_lines.c.stream, log_lines.c.text)
        .where(log_lines.c.job_id == job_id)
        .order_by(log_lines.c.id.desc())
        .limit(LOG_TAIL)
    ).all()
    return JobView(detail, usage, [(a, s, t) for a, s, t in reversed(tail)])
