"""Journal keys: how a workflow body that runs again finds the calls it made before.

Inside a workflow body every job submitted through the body's gateway gets a key
``<n>:<digest>``: ``n`` counts the body's submissions in order, the digest is of the call
(the task's name and its pickled arguments). The gateway returns the earlier job for a key
it has seen in the run, so a body that runs again — on another pilot after its pilot was
lost, or after a pause — gets the same jobs back, finished or still running, as long as it
makes the same calls in the same order. A body that makes a *different* call at some place
(it draws unseeded random numbers, or reads the clock) gets a new job there: the run stays
correct and only that call is evaluated again. Seed the optimiser and the replay is exact.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from farside_protocol.models import JobSpec
from farside_protocol.payload import decode_call

__all__ = ["Journal", "active_journal", "call_key"]


def call_key(place: int, spec: JobSpec) -> str:
    """The journal key of the ``place``-th call of a body.

    >>> from farside_protocol.payload import encode_call
    >>> spec = JobSpec(payload=encode_call(b"fn", (1, 2), {}), name="add")
    >>> call_key(3, spec) == call_key(3, spec), call_key(3, spec).startswith("3:")
    (True, True)
    """
    digest = hashlib.blake2b(digest_size=12)
    digest.update((spec.name or "").encode())
    digest.update(b"\0")
    digest.update(decode_call(spec.payload).arguments)
    return f"{place}:{digest.hexdigest()}"


@dataclass
class Journal:
    """The running body's count of calls (one per body process)."""

    workflow_id: int
    submitted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stamp(self, specs: Sequence[JobSpec]) -> list[JobSpec]:
        """``specs`` with their journal keys, in submission order."""
        with self._lock:
            first = self.submitted
            self.submitted += len(specs)
        return [
            spec.model_copy(update={"journal_key": call_key(first + n, spec)})
            for n, spec in enumerate(specs)
        ]


_active: Journal | None = None


def active_journal(workflow_id: int | None) -> Journal | None:
    """The body's journal when ``workflow_id`` (the gateway's ``whoami``) names a run."""
    global _active
    if workflow_id is None:
        return None
    if _active is None or _active.workflow_id != workflow_id:
        _active = Journal(workflow_id)
    return _active
