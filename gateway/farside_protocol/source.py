"""Functions that travel with their source lines, so remote tracebacks show the user's code.

cloudpickle (3.1 and later) renames every code object it pickles to ``<dynamic-code>``:
a traceback raised on the pilot then names neither the file nor the line the user wrote,
even when the pilot shares the notebook's file system. :class:`SourcePickler` keeps the
code object's own file name (``marshal``, which round-trips code objects exactly for the
same Python version, as cloudpickle's code reduction also requires) and carries the
lines that code object spans, read on the client through :mod:`linecache` (which also
holds notebook cells). Unpickling puts those lines into the pilot's :mod:`linecache`, so
``traceback`` prints them wherever the job runs and whatever files the pilot can see.

>>> import pickle, traceback
>>> def fails():
...     return 1 / 0
>>> data = dumps(fails)
>>> clone = pickle.loads(data)
>>> clone.__code__.co_filename == fails.__code__.co_filename
True
"""

from __future__ import annotations

import io
import linecache
import marshal
import pickle
import types
from typing import Any

import cloudpickle


def dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, with code objects keeping their file name and source."""
    with io.BytesIO() as buffer:
        SourcePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return buffer.getvalue()


class SourcePickler(cloudpickle.Pickler):  # type: ignore[misc]
    """A cloudpickle pickler whose code objects carry their file name and source lines."""

    def __init__(self, file: io.BytesIO, protocol: int | None = None) -> None:
        super().__init__(file, protocol=protocol)
        # one tuple per (file, span): pickle's memo stores a span shared by several code
        # objects once
        self._spans: dict[tuple[str, int, int], tuple[str, ...]] = {}

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            return self._reduce_code(obj)
        return super().reducer_override(obj)

    def _reduce_code(self, code: types.CodeType) -> Any:
        try:
            data = marshal.dumps(code)
        except ValueError:  # a constant marshal cannot write: cloudpickle's own way
            return NotImplemented
        first, last = _span(code)
        key = (code.co_filename, first, last)
        lines = self._spans.get(key)
        if lines is None:
            lines = tuple(linecache.getlines(code.co_filename)[first - 1 : last])
            self._spans[key] = lines
        return load_code, (data, code.co_filename, first, lines)


def load_code(data: bytes, filename: str, first: int, lines: tuple[str, ...]) -> types.CodeType:
    """Rebuild a code object pickled by :class:`SourcePickler`; remember its source lines."""
    if lines:
        remember_source(filename, first, lines)
    code = marshal.loads(data)
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError(f"expected a code object from {filename}")
    return code


def remember_source(filename: str, first: int, lines: tuple[str, ...]) -> None:
    """Put ``lines`` (starting at line ``first``) into :mod:`linecache` for ``filename``.

    Lines already known there (the real file, where the pilot sees it, or spans of other
    functions from the same cell) are kept outside the span. The entry has no modification
    time, so ``linecache.checkcache`` leaves it alone, as it does for notebook cells.
    """
    known = list(linecache.getlines(filename))
    end = first - 1 + len(lines)
    if len(known) < end:
        known.extend("\n" for _ in range(end - len(known)))
    known[first - 1 : end] = lines
    linecache.cache[filename] = (sum(map(len, known)), None, known, filename)


def _span(code: types.CodeType) -> tuple[int, int]:
    """First and last source line of ``code`` and the code objects nested in it."""
    first = last = code.co_firstlineno
    pending = [code]
    while pending:
        current = pending.pop()
        for _, _, line in current.co_lines():
            if line is not None:
                last = max(last, line)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return first, last
