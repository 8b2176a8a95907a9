"""What :class:`JobMonitor` shows, without any widget: jobs by map and state, and failures.

The board is fed from two sides. A *snapshot* (``GET /jobs``) tells each job's group and
state once; the event stream then moves jobs between states. A job whose first sign of life
is an event (submitted after the snapshot) is an *orphan* until a look-up tells its group;
its latest event is kept meanwhile, so no change is lost. Once an event has been applied to
a job, later snapshots no longer touch its state: everything after the stream's ``hello``
comes as events, in order, so the last event is the truth.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from farside_protocol import JobState
from farside_protocol.models import JobEvent, JobInfo

__all__ = ["SHOWN_STATES", "Failure", "GroupCounts", "JobBoard", "shown_state"]

#: The states a monitor counts, in the order it shows them.
SHOWN_STATES = ("pending", "queued", "running", "finished", "failed", "cancelled")


def shown_state(state: JobState) -> str:
    """``assigned`` (leased to a pilot, starting) counts as running."""
    return "running" if state is JobState.ASSIGNED else state.value


@dataclass
class _Job:
    group: str | None
    name: str | None
    state: str
    from_event: bool = False


@dataclass(frozen=True)
class Failure:
    job_id: int
    group: str | None
    name: str | None
    reason: str


@dataclass
class GroupCounts:
    """Counts per shown state of one group (``None``: jobs outside any map)."""

    group: str | None
    counts: Counter[str] = field(default_factory=Counter)
    newest: int = 0  # the highest job id: groups are listed newest first
    kind: str = "function"  # "dask-worker": the group is a Dask cluster's worker leases

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ended(self) -> int:
        return sum(self.counts[s] for s in ("finished", "failed", "cancelled"))


class JobBoard:
    """Thread-safe job states of one user, optionally of one ``group`` only."""

    def __init__(self, owner: str, group: str | None = None) -> None:
        self.owner = owner
        self.group = group
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._groups: dict[str | None, GroupCounts] = {}
        self._reasons: dict[int, str] = {}
        self._orphans: dict[int, JobEvent] = {}
        self._ignored: set[int] = set()

    # ------------------------------------------------------------------ input

    def apply_snapshot(self, infos: Iterable[JobInfo]) -> None:
        """Jobs as ``GET /jobs`` listed them; states already set by events are kept."""
        with self._lock:
            for info in infos:
                self._add(info, None)

    def apply_events(self, events: Iterable[JobEvent]) -> set[int]:
        """Apply state changes; returns the ids of jobs not known yet (to look up)."""
        unknown: set[int] = set()
        with self._lock:
            for event in events:
                job = self._jobs.get(event.job_id)
                if job is not None:
                    self._move(event.job_id, job, shown_state(event.state), event.reason)
                    job.from_event = True
                elif event.job_id not in self._ignored:
                    self._orphans[event.job_id] = event
                    unknown.add(event.job_id)
        return unknown

    def apply_lookup(self, asked: Iterable[int], infos: Iterable[JobInfo]) -> None:
        """The answer to a look-up of ``asked`` ids; ids it did not list are ignored since."""
        with self._lock:
            found = {info.id: info for info in infos}
            for job_id in asked:
                info = found.get(job_id)
                if info is None:
                    self._ignored.add(job_id)
                    self._orphans.pop(job_id, None)
                else:
                    self._add(info, self._orphans.pop(job_id, None))

    def _add(self, info: JobInfo, event: JobEvent | None) -> None:
        if info.owner != self.owner or (self.group is not None and info.group != self.group):
            self._ignored.add(info.id)  # an admin's listing holds other users' jobs too
            return
        job = self._jobs.get(info.id)
        if job is None:
            job = self._jobs[info.id] = _Job(info.group, info.name, "")
            groups = self._groups.setdefault(info.group, GroupCounts(info.group, kind=info.kind))
            groups.newest = max(groups.newest, info.id)
        if event is not None:
            self._move(info.id, job, shown_state(event.state), event.reason or info.error)
            job.from_event = True
        elif not job.from_event:
            self._move(info.id, job, shown_state(info.state), info.error)

    def _move(self, job_id: int, job: _Job, state: str, reason: str | None) -> None:
        counts = self._groups[job.group].counts
        if job.state:
            counts[job.state] -= 1
        counts[state] += 1
        job.state = state
        if state == "failed":
            self._reasons[job_id] = reason or "(no reason given)"
        else:
            self._reasons.pop(job_id, None)  # a retried job is no failure (yet)

    # ----------------------------------------------------------------- output

    def pending_lookups(self) -> set[int]:
        with self._lock:
            return set(self._orphans)

    def groups(self) -> list[GroupCounts]:
        """Every group, newest first, with copies of its counts."""
        with self._lock:
            out = [
                GroupCounts(g.group, Counter(+g.counts), g.newest, g.kind)
                for g in self._groups.values()
            ]
        return sorted(out, key=lambda g: -g.newest)

    def counts(self, group: str | None = None) -> dict[str, int]:
        """Jobs per shown state, of one group or (``group=None``) of all."""
        with self._lock:
            chosen = [g for key, g in self._groups.items() if group is None or key == group]
            total: Counter[str] = Counter()
            for g in chosen:
                total.update(g.counts)
        return {state: total[state] for state in SHOWN_STATES}

    def failures(self, limit: int | None = None) -> list[Failure]:
        """Failed jobs with their reasons, newest first."""
        with self._lock:
            ids = sorted(self._reasons, reverse=True)[:limit]
            return [
                Failure(i, self._jobs[i].group, self._jobs[i].name, self._reasons[i]) for i in ids
            ]

    def failure_count(self) -> int:
        with self._lock:
            return len(self._reasons)
