"""What an offloaded graph tells while it runs: Dask's callbacks and a tqdm bar.

Dask's local schedulers call the callbacks in ``dask.callbacks.Callback.active``
(``with ProgressBar():``, ``dask.diagnostics.Profiler``' start and finish, ...) with a
state dict in which tasks move from ``waiting`` to ``finished``. An offload does the same
at the granularity it has: when a part's job ends (its state event arrives on the
gateway's stream, without its result), every task of that part is finished. So
``dask.diagnostics.ProgressBar`` works for ``scheduler=gw.offload`` as for the threaded
scheduler; ``progress=True`` shows a tqdm bar of the offload's jobs instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from dask.callbacks import Callback, unpack_callbacks

from ._offload_plan import Part
from ._progress import Bar

if TYPE_CHECKING:
    from farside_protocol.models import JobEvent

    from ._gateway import BaseGateway


class OffloadProgress:
    """Follows the jobs of one offload and reports their ends."""

    def __init__(self, dsk: Any, parts: Sequence[Part], bar: bool, group: str) -> None:
        self.dsk = dsk
        self._parts: dict[int, Part] = {}
        keys: list[Hashable] = [key for part in parts for key in part.keys]
        # the state Dask's own schedulers keep, as far as callbacks read it
        self.state: dict[str, Any] = {
            "cache": {},
            "dependencies": {},
            "dependents": {},
            "waiting_data": {},
            "waiting": {key: set() for key in keys},
            "ready": [],
            "running": set(),
            "finished": set(),
            "released": set(),
        }
        self._start, self._start_state, self._pretask, self._posttask, self._finish = (
            unpack_callbacks(Callback.active)  # type: ignore[no-untyped-call]
        )
        self.bar = Bar(len(parts), desc=group) if bar else None
        for start in self._start:
            start(dsk)
        for start_state in self._start_state:
            start_state(dsk, self.state)

    def follow(self, gateway: BaseGateway, job_ids: Sequence[int], parts: Sequence[Part]) -> None:
        """Report each of ``parts`` (submitted as ``job_ids``) when its job ends."""
        self._parts.update(zip(job_ids, parts, strict=True))
        gateway._watch(list(job_ids), self._ended)

    def _ended(self, event: JobEvent) -> None:
        part = self._parts.pop(event.job_id, None)
        if part is None:
            return
        for key in part.keys:
            self.state["waiting"].pop(key, None)
            self.state["finished"].add(key)
            for pretask in self._pretask:
                pretask(key, self.dsk, self.state)
            for posttask in self._posttask:
                posttask(key, None, self.dsk, self.state, event.job_id)
        if self.bar is not None:
            self.bar.advance()

    def finish(self, errored: bool) -> None:
        for finish in self._finish:
            finish(self.dsk, self.state, errored)
        if self.bar is not None:
            self.bar.close()
