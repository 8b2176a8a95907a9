"""The keeper's stop: whoever asks (the owner's request, the reconcile pass) returns only
once the cluster is marked ended, also when both ask at once."""

from __future__ import annotations

import asyncio
from typing import Any

from farside_gateway.clusters.keeper import SchedulerKeeper


class FakeScheduler:
    """A scheduler process: stop() ends it, a moment later, with status 0."""

    log_path = "/dev/null"

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    async def stop(self) -> None:
        await asyncio.sleep(0.01)
        self.ended.set()

    async def wait(self) -> int:
        await self.ended.wait()
        return 0


async def test_two_stops_at_once_both_wait_for_the_end() -> None:
    marked: list[tuple[str, str, str]] = []

    async def mark_ended(name: str, state: str, reason: str) -> None:
        await asyncio.sleep(0.05)  # a database write takes a while
        marked.append((name, state, reason))

    async def read_row(name: str) -> Any:
        raise AssertionError("a stopped scheduler's row is not needed")

    keeper = SchedulerKeeper(rpc=None, mark_ended=mark_ended, read_row=read_row)  # type: ignore[arg-type]
    keeper.started("c1", FakeScheduler())  # type: ignore[arg-type]
    seen_at_return: list[int] = []

    async def stop(reason: str) -> None:
        await keeper.stop("c1", reason)
        seen_at_return.append(len(marked))

    await asyncio.gather(stop("closed by its owner"), stop("closed by its owner"))
    assert marked == [("c1", "stopped", "closed by its owner")]
    assert seen_at_return == [1, 1]  # neither returned before the cluster was marked
    assert not keeper.manages("c1")
