"""Running a notebook cell again closes the widgets it made the time before.

A ``JobMonitor`` or ``LogView`` follows the gateway on threads of its own until it is
closed. When a cell runs again, Jupyter clears its old output but keeps the widget objects
behind it, so every re-run would leave one more event stream open. JupyterLab, Notebook 7
and VS Code send the cell's id with each execute request: a widget notes the id of the
cell that made it, and the next run of that cell closes it first. Outside a kernel, or
with a front end that sends no cell id, nothing changes (``close()`` still works).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Protocol

__all__ = ["close_with_cell"]


class _Closable(Protocol):
    def close(self) -> None: ...


_lock = threading.Lock()
_made_by: dict[str, list[weakref.ref[_Closable]]] = {}
_hooked: set[int] = set()  # ids of the shells we listen to


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def current_cell_id(shell: Any) -> str | None:
    """The id of the cell being run, from the execute request ipykernel is serving."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:  # an older ipykernel, or no request being served
        return None
    metadata = parent.get("metadata") if isinstance(parent, dict) else None
    cell = metadata.get("cellId") if isinstance(metadata, dict) else None
    return cell if isinstance(cell, str) and cell else None


def _before_a_cell_runs(info: Any) -> None:
    cell = getattr(info, "cell_id", None) or current_cell_id(_shell())
    if not cell:
        return
    with _lock:
        refs = _made_by.pop(cell, [])
    for ref in refs:
        widget = ref()
        if widget is not None:
            with contextlib.suppress(Exception):  # a widget that fails to close is gone anyway
                widget.close()


def close_with_cell(widget: _Closable) -> None:
    """Close ``widget`` when the cell that is making it now runs again."""
    shell = _shell()
    cell = current_cell_id(shell)
    if cell is None:
        return
    with _lock:
        if id(shell) not in _hooked:
            shell.events.register("pre_run_cell", _before_a_cell_runs)
            _hooked.add(id(shell))
        _made_by.setdefault(cell, []).append(weakref.ref(widget))
