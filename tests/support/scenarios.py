"""Scenarios shared by the suites that run them on different sites (local, Slurm)."""

from __future__ import annotations

import time
from typing import Any

import farside


def two_users_submit_at_once(
    alice: Any, bob: Any, nap: float = 0.05, many: int = 200, few: int = 20
) -> list[str]:
    """Alice maps ``many`` short tasks, then Bob ``few``, at once; both must complete.
    Returns the owners of all jobs in the order they started."""

    def work(x: int) -> int:
        time.sleep(nap)
        return x

    alices = farside.task(work, gateway=alice, memory="100 MB", name="nap").map(range(many))
    bobs = farside.task(work, gateway=bob, memory="100 MB", name="nap").map(range(few))
    assert list(bobs) == list(range(few))
    assert list(alices) == list(range(many))
    starts = sorted(
        (j.started, j.owner)
        for client in (alice, bob)
        for j in client.jobs(limit=many + few)
        if j.started is not None
    )
    return [owner for _, owner in starts]


def last_start_of(owners: list[str], who: str) -> int:
    """Position of ``who``'s last job among all starts."""
    return max(i for i, owner in enumerate(owners) if owner == who)
