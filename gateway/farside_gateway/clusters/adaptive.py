"""Adaptive scaling done by the gateway, for clients that ask it to (dask-gateway's
``cluster.adapt()`` sends the bounds and leaves; farside's own client adapts itself).

Each reconcile pass asks the scheduler what it would like (``adaptive_target``, Dask's own
estimate from queued work and memory), keeps it within the bounds, and moves the default
group's target there: up at once; down by naming the workers Dask would close first
(``workers_to_close``), which are then retired (their results move) before their leases end,
as when a client's ``Adaptive`` scales down.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from farside_protocol.clusters import DEFAULT_GROUP, WorkerGroupSpec, group_of

log = logging.getLogger(__name__)

SchedulerCall = Callable[..., Awaitable[Any]]


def adapt_bounds(minimum: int | None, maximum: int | None) -> str:
    """The ``clusters.adapt`` value for these bounds (checked by the caller)."""
    return json.dumps({"minimum": minimum or 0, "maximum": maximum})


def wanted_workers(adapt: str, asked: int) -> int:
    """What the scheduler asked for, within the bounds.

    >>> wanted_workers('{"minimum": 1, "maximum": 5}', 9)
    5
    >>> wanted_workers('{"minimum": 2, "maximum": null}', 0)
    2
    """
    bounds = json.loads(adapt)
    low = int(bounds.get("minimum") or 0)
    high = bounds.get("maximum")
    wanted = max(low, asked)
    return wanted if high is None else min(int(high), wanted)


async def adapt_step(
    row: Any,
    groups: dict[str, WorkerGroupSpec],
    call: SchedulerCall,
    scale: Callable[[int], Awaitable[Any]],
    stop: Callable[[list[str]], Awaitable[Any]],
) -> None:
    """One pass of server-side adaptation for cluster ``row`` (with bounds set)."""
    current = groups[DEFAULT_GROUP].workers
    try:
        asked = int(await call(row, "adaptive_target"))
    except Exception as exc:  # the next pass asks again
        log.warning("cluster %s: no adaptive target from the scheduler: %s", row.name, exc)
        return
    wanted = wanted_workers(row.adapt, asked)
    if wanted > current:
        log.info("cluster %s: adapting up %d -> %d workers", row.name, current, wanted)
        await scale(wanted)
    elif wanted < current:
        closable = await call(row, "workers_to_close", n=current - wanted, attribute="name")
        names = [str(n) for n in closable if group_of(str(n)) == DEFAULT_GROUP]
        if names:
            log.info("cluster %s: adapting down: retiring %s", row.name, names)
            await stop(names)
        else:  # workers not connected yet: lower the target instead
            await scale(wanted)
