"""The one background thread behind each widget: it redraws when poked, at a bounded rate.

Widgets must not block the kernel, so their network work and drawing happen here. Setting
ipywidgets traits from this thread is fine: the kernel sends the resulting comm messages
on its IOPub thread, and JupyterLab applies them as they come (tests/integration/
test_widgets_browser.py watches this in Chromium).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Painter"]

log = logging.getLogger("farside")


class Painter:
    """Call ``paint()`` on a daemon thread whenever :meth:`poke` was called, at most once
    per ``interval`` seconds, until :meth:`stop`.

    ``paint`` returns the seconds after which it wants to run again although nobody poked
    (to retry a connection, say), or ``None`` to wait for the next poke. An exception it
    raises is logged and retried after a second.
    """

    def __init__(self, paint: Callable[[], float | None], interval: float, name: str) -> None:
        self._paint = paint
        self._interval = interval
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._poked.set()
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        again: float | None = None
        while not self._stop.is_set():
            self._poked.wait(again)
            if self._stop.is_set():
                return
            self._poked.clear()
            try:
                again = self._paint()
            except Exception:
                log.exception("a farside widget failed to update; retrying")
                again = 1.0
            self._stop.wait(self._interval)  # coalesce bursts of pokes into one paint
