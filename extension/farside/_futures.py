"""Futures of remote calls, and the ordered result of a map.

A :class:`FarsideFuture` is a :class:`concurrent.futures.Future`, so ``wait``,
``as_completed`` and callbacks work as usual; it is also awaitable. It resolves from the
gateway's event stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ._outcome import Outcome
from ._progress import progress as show_progress

if TYPE_CHECKING:
    from ._gateway import BaseGateway
    from .widgets import JobMonitor

__all__ = ["FarsideFuture", "MapResult"]

T = TypeVar("T")


class FarsideFuture(concurrent.futures.Future[T]):
    """The result of one job, to come.

    >>> fut = square.submit(3)            # doctest: +SKIP
    >>> fut.job_id, fut.result(timeout=60)  # doctest: +SKIP
    (42, 9)
    >>> await square.submit(4)            # doctest: +SKIP
    16
    """

    def __init__(self, gateway: BaseGateway, job_id: int) -> None:
        super().__init__()
        self.gateway = gateway
        self.job_id = job_id

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else "done" if self.done() else "pending"
        return f"<FarsideFuture job {self.job_id} {state}>"

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()

    def cancel(self) -> bool:
        """Cancel the job on the gateway (queued or running), then this future.

        Returns False if the future is already done; a job that ended just before the
        gateway received the request stays ended there, but this future is cancelled.
        """
        if self.done():
            return False
        self.gateway.cancel([self.job_id])
        return super().cancel()

    def _settle(self, outcome: Outcome) -> None:
        """Apply an outcome; a future already done (cancelled locally, or a replay) stays as is."""
        try:
            if outcome.cancelled:
                super().cancel()
            elif outcome.error is not None:
                self.set_exception(outcome.error)
            else:
                self.set_result(outcome.value)
        except concurrent.futures.InvalidStateError:
            pass


class MapResult(Generic[T]):
    """The results of ``task.map(...)``, in input order, as they become available.

    Iterating yields each result in order and raises the first error when it is reached.

    >>> results = square.map(range(4))    # doctest: +SKIP
    >>> list(results), results.group      # doctest: +SKIP
    ([0, 1, 4, 9], 'square-1a2b3c4d')
    """

    def __init__(self, gateway: BaseGateway, futures: list[FarsideFuture[T]], group: str) -> None:
        self.gateway = gateway
        self.futures = futures
        self.group = group
        self._next = 0

    def __repr__(self) -> str:
        done = sum(f.done() for f in self.futures)
        return f"<MapResult group={self.group!r} {done}/{len(self.futures)} done>"

    def __len__(self) -> int:
        return len(self.futures)

    @property
    def job_ids(self) -> list[int]:
        return [f.job_id for f in self.futures]

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._next >= len(self.futures):
            raise StopIteration
        future = self.futures[self._next]
        self._next += 1
        return future.result()

    def results(self, timeout: float | None = None, progress: bool = False) -> list[T]:
        """All results in order; the first error raises. ``timeout`` bounds the whole wait;
        ``progress=True`` shows a tqdm bar while waiting."""
        if progress:
            show_progress(self)
        _, not_done = concurrent.futures.wait(self.futures, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(self.futures)} jobs not done yet")
        return [f.result() for f in self.futures]

    def as_completed(
        self, timeout: float | None = None, progress: bool = False
    ) -> Iterator[FarsideFuture[T]]:
        """The futures in the order they finish; ``progress=True`` shows a tqdm bar."""
        done = concurrent.futures.as_completed(self.futures, timeout=timeout)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(self.futures), desc=self.group, unit="job")
        return cast(Iterator[FarsideFuture[T]], done)

    def monitor(self) -> JobMonitor:
        """A live widget of this map's jobs by state, with failures (needs ipywidgets).

        >>> results.monitor()                 # the last expression of a cell  # doctest: +SKIP
        """
        from .widgets import JobMonitor

        return JobMonitor(self.gateway, group=self.group)

    def cancel(self) -> list[int]:
        """Cancel every job of the map that has not ended; returns the cancelled job ids."""
        cancelled = self.gateway.cancel(group=self.group)
        for future in self.futures:
            future._settle(Outcome(cancelled=True))
        return cancelled
