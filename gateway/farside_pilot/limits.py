"""The pilot enforces each job's memory and walltime, so a job that overruns fails as a
*resource* error (and is retried with more) instead of taking its neighbours down.

Memory is the resident set of the job's worker process and all its descendants, read from
``/proc`` a few times a second; a job that goes over what it asked for is killed. This is
what batch systems do with cgroups, done where no cgroup is ours to use (a pilot is a
guest in its slot). Where ``/proc`` is missing, only walltime is enforced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: seconds between checks: short enough to catch a runaway allocation before the node
#: suffers, long enough to cost nothing measurable
WATCH_INTERVAL = 0.25


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as fh:
            return [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        return []


def _cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # after the command name in parentheses: utime, stime, cutime, cstime are
            # fields 14-17 of the line
            fields = fh.read().rsplit(b")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _tree(pid: int) -> list[int]:
    found, todo, seen = [], [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found.append(current)
        todo.extend(_children(current))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds used by ``pid`` and its descendants (0 if unknown)."""
    return sum(_cpu(p) for p in _tree(pid))


@dataclass
class UsageSeries:
    """A job's memory and CPU over time, as prmon keeps them, in bounded space:
    ``(seconds since the start, RSS bytes, CPU seconds)`` every ``interval`` seconds; when
    ``limit`` points are kept, every other one goes and the interval doubles.

    >>> series = UsageSeries(interval=1.0, limit=4)
    >>> for t in range(9):
    ...     series.add(float(t), 100 * t, 0.5 * t)
    >>> [p[0] for p in series.points], series.interval
    ([0.0, 4.0, 8.0], 4.0)
    """

    interval: float = 5.0
    limit: int = 500
    points: list[tuple[float, int, float]] = field(default_factory=list)
    _next: float = 0.0

    def due(self, elapsed: float) -> bool:
        return elapsed >= self._next

    def add(self, elapsed: float, rss: int, cpu: float) -> None:
        if not self.due(elapsed):
            return
        self.points.append((round(elapsed, 2), rss, round(cpu, 2)))
        if len(self.points) > self.limit:
            self.points = self.points[::2]
            self.interval *= 2
        self._next = elapsed + self.interval


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (0 if unknown)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss(current)
        todo.extend(_children(current))
    return total
