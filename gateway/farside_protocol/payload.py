"""What travels inside a job: the pickled call, and the pickled outcome.

A *call* is ``(version, function bytes, arguments bytes)``. The function is pickled once by
the client (cloudpickle, so functions and closures from notebook cells travel by value) and
the same bytes are reused for every call of a map; workers cache unpickled functions by
digest. An *outcome* is ``(version, "ok", value bytes)`` or ``(version, "error", ErrorInfo)``.
Exceptions travel both pickled (so the client can re-raise the real type) and as text (so it
can explain them when the type cannot be imported on the client).

A job with *inputs* (parent jobs whose results it needs, see ``JobSpec.inputs``) carries an
:class:`InputRef` wherever a parent's value goes; the worker replaces each with the value of
that parent's outcome before the call (:func:`substitute_inputs`), so results move from job
to job through the gateway, never through the client.
"""

from __future__ import annotations

import hashlib
import pickle
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from . import source

FORMAT_VERSION = 1


class PayloadError(ValueError):
    """A payload or outcome could not be decoded."""


@dataclass(frozen=True)
class Call:
    function: bytes
    arguments: bytes

    @property
    def function_digest(self) -> str:
        return hashlib.blake2b(self.function, digest_size=16).hexdigest()


@dataclass(frozen=True)
class ErrorInfo:
    type_name: str
    message: str
    traceback: str
    exception: bytes | None  # cloudpickled exception, None if it could not be pickled


@dataclass(frozen=True)
class InputRef:
    """Stands in a call's arguments for the result of parent job ``job_id``.

    The parent must be one of the job's ``inputs``. Placeholders may sit anywhere inside
    lists, tuples (namedtuples too) and dicts of the arguments, as Dask graphs nest them.

    >>> substitute_inputs(([InputRef(7), 1], {"x": InputRef(7)}), {7: "seven"})
    (['seven', 1], {'x': 'seven'})
    """

    job_id: int


def substitute_inputs(obj: Any, values: Mapping[int, Any]) -> Any:
    """``obj`` with every :class:`InputRef` inside lists, tuples and dicts replaced.

    Containers without a placeholder are returned as they are, not copied. Raises
    :class:`PayloadError` for a placeholder whose job is not in ``values``.
    """
    if isinstance(obj, InputRef):
        try:
            return values[obj.job_id]
        except KeyError:
            raise PayloadError(
                f"the call refers to job {obj.job_id}, which is not one of its inputs; name "
                "it in the job's inputs (and after)"
            ) from None
    # exact types: a subclass may not rebuild from its items (tuples are the exception, for
    # namedtuples)
    if type(obj) is list:
        items = [substitute_inputs(item, values) for item in obj]
        return items if any(a is not b for a, b in zip(items, obj, strict=True)) else obj
    if isinstance(obj, tuple):
        items = [substitute_inputs(item, values) for item in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        # a namedtuple is rebuilt from fields, a plain tuple from an iterable
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if type(obj) is dict:
        pairs = {key: substitute_inputs(value, values) for key, value in obj.items()}
        changed = any(pairs[key] is not value for key, value in obj.items())
        return pairs if changed else obj
    return obj


def dump_function(fn: Any) -> bytes:
    # code objects keep their file name and source lines for remote tracebacks (source.py)
    return source.dumps(fn)


def encode_call(function: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    arguments = source.dumps((args, kwargs))
    return pickle.dumps((FORMAT_VERSION, function, arguments), protocol=pickle.HIGHEST_PROTOCOL)


def decode_call(payload: bytes) -> Call:
    try:
        version, function, arguments = pickle.loads(payload)
    except Exception as exc:
        raise PayloadError(f"payload is not a farside call: {exc}") from exc
    if version != FORMAT_VERSION:
        raise PayloadError(f"payload format {version} is not supported (need {FORMAT_VERSION})")
    return Call(function, arguments)


def encode_value(value: Any) -> bytes:
    try:
        # plain pickle handles nearly every result and is several times cheaper than
        # cloudpickle on small values; cloudpickle is for lambdas and locally defined classes
        body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        body = cloudpickle.dumps(value)
    return pickle.dumps((FORMAT_VERSION, "ok", body), protocol=pickle.HIGHEST_PROTOCOL)


def encode_exception(exc: BaseException) -> bytes:
    try:
        exc_bytes: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        exc_bytes = None
    info = ErrorInfo(
        type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        exception=exc_bytes,
    )
    return pickle.dumps((FORMAT_VERSION, "error", info), protocol=pickle.HIGHEST_PROTOCOL)


def decode_outcome(data: bytes) -> tuple[bool, Any]:
    """Return ``(True, value)`` or ``(False, ErrorInfo)``.

    Raises :class:`PayloadError` if the value itself cannot be unpickled here (for example a
    module that exists only on the worker); the message names the missing piece.
    """
    try:
        version, kind, body = pickle.loads(data)
    except Exception as exc:
        raise PayloadError(f"result is not a farside outcome: {exc}") from exc
    if version != FORMAT_VERSION:
        raise PayloadError(f"result format {version} is not supported (need {FORMAT_VERSION})")
    if kind == "ok":
        try:
            return True, pickle.loads(body)
        except ModuleNotFoundError as exc:
            raise PayloadError(
                f"the result needs module {exc.name!r}, which is not importable here"
            ) from exc
    return False, body
