"""Running a cell again closes the widgets it made before (farside.widgets._cells).

The shell here is a stand-in with IPython's two touch points (``kernel.get_parent()``, the
execute request being served, and ``events.register``); JupyterLab sending real cell ids
is checked in tests/integration/test_widgets_browser.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from farside.widgets import _cells


class FakeShell:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.cell: str | None = None
        self.kernel = SimpleNamespace(get_parent=self._parent)

    def _parent(self) -> dict[str, Any]:
        return {"metadata": {"cellId": self.cell}} if self.cell else {}

    @property
    def events(self) -> Any:
        return SimpleNamespace(register=lambda event, fn: self.callbacks.append((event, fn)))

    def run_cell(self, cell: str) -> None:
        self.cell = cell
        for event, fn in self.callbacks:
            if event == "pre_run_cell":
                fn(SimpleNamespace(cell_id=cell))


class Widget:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> FakeShell:
    fake = FakeShell()
    monkeypatch.setattr(_cells, "_shell", lambda: fake)
    monkeypatch.setattr(_cells, "_made_by", {})
    monkeypatch.setattr(_cells, "_hooked", set())
    return fake


def test_a_rerun_closes_what_the_cell_made_and_nothing_else(shell: FakeShell) -> None:
    shell.run_cell("cell-a")
    first = Widget()
    _cells.close_with_cell(first)
    shell.run_cell("cell-b")
    other = Widget()
    _cells.close_with_cell(other)
    assert not first.closed

    shell.run_cell("cell-a")  # the user runs the first cell again
    assert first.closed
    assert not other.closed
    again = Widget()
    _cells.close_with_cell(again)
    shell.run_cell("cell-a")
    assert again.closed
    assert len(shell.callbacks) == 1  # one listener, however many widgets


def test_without_a_cell_id_nothing_is_tracked(shell: FakeShell) -> None:
    widget = Widget()
    _cells.close_with_cell(widget)  # no execute request (a script, an old front end)
    assert shell.callbacks == []
    shell.run_cell("cell-a")
    assert not widget.closed


def test_outside_ipython_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cells, "_shell", lambda: None)
    widget = Widget()
    _cells.close_with_cell(widget)
    assert not widget.closed
