"""Turn a job's terminal event (and its outcome bytes) into a value or an exception.

* ``finished``: the outcome holds the value.
* ``failed`` with an error outcome: the function raised. The exception is rebuilt from its
  pickle and raised as itself, with the remote traceback attached as a note; if its type
  cannot be imported here it becomes :class:`~farside.RemoteError`.
* ``failed`` without an outcome: :class:`~farside.JobFailed` (lost pilot, bad payload, ...).
* ``cancelled``: the future is cancelled.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from farside_protocol import JobFailed, JobState, RemoteError, TaskError
from farside_protocol.models import JobEvent
from farside_protocol.payload import ErrorInfo, PayloadError, decode_outcome

__all__ = ["Outcome", "exception_from_error", "outcome_of"]


@dataclass(frozen=True)
class Outcome:
    """What a future becomes: a value, an exception, or cancelled."""

    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False


def exception_from_error(info: ErrorInfo, job_id: int | None) -> BaseException:
    """The remote exception itself if it unpickles here, else a :class:`RemoteError`.

    >>> from farside_protocol.payload import decode_outcome, encode_exception
    >>> _, info = decode_outcome(encode_exception(KeyError("x")))
    >>> exc = exception_from_error(info, 7)
    >>> type(exc).__name__, exc.__notes__[0].splitlines()[0]
    ('KeyError', 'Remote traceback (job 7):')
    """
    note = f"Remote traceback (job {job_id}):\n{info.traceback.rstrip()}"
    if info.exception is not None:
        try:
            exc = pickle.loads(info.exception)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            exc.add_note(note)
            return exc
    remote = RemoteError(info.type_name, info.message, info.traceback, job_id)
    remote.add_note(note)
    return remote


def decode(data: bytes, job_id: int) -> Outcome:
    """Decode outcome bytes (``protocol.payload``) of one job."""
    try:
        ok, body = decode_outcome(data)
    except PayloadError as exc:
        error = TaskError(
            f"job {job_id} ended but its outcome cannot be loaded here: {exc}", job_id
        )
        error.__cause__ = exc
        return Outcome(error=error)
    if ok:
        return Outcome(value=body)
    if isinstance(body, ErrorInfo):
        return Outcome(error=exception_from_error(body, job_id))
    return Outcome(error=TaskError(f"job {job_id} sent an unknown error outcome", job_id))


def outcome_of(event: JobEvent, data: bytes | None) -> Outcome:
    """The outcome of a terminal ``event``; ``data`` is its outcome bytes (inline or fetched)."""
    if event.state is JobState.CANCELLED:
        return Outcome(cancelled=True)
    if data is not None:
        return decode(data, event.job_id)
    if event.state is JobState.FAILED:
        reason = event.reason or "the job failed without a result"
        error_class = event.error_class.value if event.error_class else None
        return Outcome(
            error=JobFailed(f"job {event.job_id} failed: {reason}", event.job_id, error_class)
        )
    return Outcome(
        error=TaskError(f"job {event.job_id} finished but the gateway has no result", event.job_id)
    )
