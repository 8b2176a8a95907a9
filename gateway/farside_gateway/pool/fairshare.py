"""Fair share: when a pilot asks for work, the user furthest below their share goes first.

A user's *share* is their group's share (configured; from the first group of their token)
split equally among the group's users who have queued work, or ``default_share`` for a
user in no listed group. A user's *usage* is the cores their jobs hold on pilots now. The
user with the smallest usage / share is served first; within a user, higher priority and
then older jobs first. Per-user caps on held jobs and cores are enforced here too.

This is the instantaneous form of fair share (as in HTCondor's negotiation by current
usage, without decay): it needs no history and is right from the first pilot request,
which is what a user of an interactive notebook notices — two users submitting 200 and
20 tasks at once both make progress from the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from farside_protocol import JobState

from ..db.schema import jobs

_HELD = [JobState.ASSIGNED.value, JobState.RUNNING.value]
#: enough users for any real pool; beyond it the rest wait for a later request
MAX_USERS_SCANNED = 1000


@dataclass(frozen=True)
class ShareRules:
    groups: dict[str, float] = field(default_factory=dict)
    default_share: float = 1.0
    max_jobs: int | None = None
    max_cores: int | None = None


@dataclass
class Claimant:
    """A user with queued work, and what they hold now."""

    owner: str
    group: str | None
    held_jobs: int = 0
    held_cores: int = 0
    share: float = 1.0

    def room(self, rules: ShareRules) -> tuple[int, int | None]:
        """How many more jobs, and cores (None: unlimited), this user may take now."""
        jobs_left = rules.max_jobs - self.held_jobs if rules.max_jobs is not None else 1 << 30
        cores_left = rules.max_cores - self.held_cores if rules.max_cores is not None else None
        return max(0, jobs_left), (max(0, cores_left) if cores_left is not None else None)


def queued_owners(conn: Connection) -> list[tuple[str, str | None]]:
    """Distinct users with queued jobs, and the share group of one of their jobs.

    A loose index scan (one short index probe per user on ``ix_jobs_owner_queue``), so the
    cost grows with the number of users, not of queued jobs.
    """
    found: list[tuple[str, str | None]] = []
    base = select(jobs.c.owner, jobs.c.share_group).where(jobs.c.state == JobState.QUEUED.value)
    row = conn.execute(base.order_by(jobs.c.owner).limit(1)).first()
    while row is not None and len(found) < MAX_USERS_SCANNED:
        found.append((row.owner, row.share_group))
        row = conn.execute(
            base.where(jobs.c.owner > row.owner).order_by(jobs.c.owner).limit(1)
        ).first()
    return found


def held_usage(conn: Connection) -> dict[str, tuple[int, int]]:
    """Jobs and cores each user holds on pilots now."""
    rows = conn.execute(
        select(jobs.c.owner, func.count(), func.sum(jobs.c.cores))
        .where(jobs.c.state.in_(_HELD))
        .group_by(jobs.c.owner)
    ).all()
    return {owner: (int(n), int(cores or 0)) for owner, n, cores in rows}


def claimants(conn: Connection, rules: ShareRules) -> list[Claimant]:
    """Users with queued work, with their share and usage, in no particular order."""
    owners = queued_owners(conn)
    if not owners:
        return []
    usage = held_usage(conn) if len(owners) > 1 or rules.max_jobs or rules.max_cores else {}
    members: dict[str, int] = {}
    for _, group in owners:
        if group in rules.groups:
            members[group] = members.get(group, 0) + 1
    result = []
    for owner, group in owners:
        held_jobs, held_cores = usage.get(owner, (0, 0))
        if group in rules.groups:
            share = rules.groups[group] / members[group]
        else:
            share = rules.default_share
        result.append(Claimant(owner, group, held_jobs, held_cores, share))
    return result


def plan(users: list[Claimant], rules: ShareRules, max_jobs: int) -> list[tuple[Claimant, int]]:
    """Split ``max_jobs`` among users, one job at a time to the one furthest below share.

    Returns (user, jobs) in the order they were first chosen; users at a cap get nothing.
    Each job is counted as one core here: what a job holds is known only once it is
    claimed, and the caps are checked exactly at the claim.
    """
    order: list[Claimant] = []
    count: dict[str, int] = {}
    room = {u.owner: u.room(rules) for u in users}
    for _ in range(max_jobs):
        best: Claimant | None = None
        best_key = 0.0
        for user in users:
            taken = count.get(user.owner, 0)
            jobs_left, cores_left = room[user.owner]
            if taken >= jobs_left or (cores_left is not None and taken >= cores_left):
                continue
            key = (user.held_cores + taken) / user.share
            if best is None or key < best_key:
                best, best_key = user, key
        if best is None:
            break
        if best.owner not in count:
            order.append(best)
            count[best.owner] = 0
        count[best.owner] += 1
    return [(user, count[user.owner]) for user in order]
