"""Progress bars: tqdm for maps, ``as_completed`` and offloaded graphs; Dask's callbacks
(``dask.diagnostics.ProgressBar`` and the like) for offloaded graphs.

``tqdm.auto`` draws a widget in a notebook and text in a terminal, which is what users of
Dask's and tqdm's own bars expect; farside does not draw bars of its own. A bar advances
from the gateway's event stream (futures' done callbacks, or the ends of an offload's
intermediate jobs, which the client sees as state events without their results).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Bar", "progress"]


class Bar:
    """A tqdm bar counting ended jobs; thread-safe, closed when the count is reached."""

    def __init__(self, total: int, desc: str | None = None, unit: str = "job") -> None:
        from tqdm.auto import tqdm  # here: importing farside stays light

        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True)
        self._lock = threading.Lock()
        self.total = total
        self.done = 0
        if total == 0:
            self.close()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            if self._bar.disable or self.done >= self.total:
                return
            self.done += n
            self._bar.update(n)
            if self.done >= self.total:
                self._bar.close()

    def close(self) -> None:
        with self._lock:
            self._bar.close()


def progress(futures: Iterable[Any], desc: str | None = None) -> Bar:
    """A bar that advances as ``futures`` end (farside futures or a map's result).

    >>> results = square.map(range(100))           # doctest: +SKIP
    >>> farside.progress(results)                  # doctest: +SKIP
    """
    items = list(getattr(futures, "futures", futures))
    bar = Bar(len(items), desc or getattr(futures, "group", None))
    for future in items:
        future.add_done_callback(_advance(bar))
    return bar


def _advance(bar: Bar) -> Callable[[Any], None]:
    def done(_: Any) -> None:
        bar.advance()

    return done
