"""The pilot enforces each job's memory and walltime, so a job that overruns fails as a
*resource* error (and is retried with more) instead of taking its neighbours down.

Memory is the resident set of the job's worker process and all its descendants, read from
``/proc`` a few times a second; a job that goes over what it asked for is killed. This is
what batch systems do with cgroups, done where no cgroup is ours to use (a pilot is a
guest in its slot). Where ``/proc`` is missing, only walltime is enforced.
"""

from __future__ import annotations

import os

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
