"""Following the logs of a changing set of jobs, a few at a time, into a bounded buffer.

One job is one log stream (``GET /jobs/{id}/logs/stream``) on a thread of its own. A map
of a thousand jobs does not open a thousand streams: at most ``max_streams`` are open, in
job id order (roughly the order jobs start), and a stream frees its place when its job
ends. Which jobs to follow comes from a callable, asked again every ``refresh`` seconds
while new jobs may appear (a map's jobs are known at once; a cluster's workers come and go).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import httpx

from .._http import Api
from .._logs import follow_lines
from ._html import LogEntry

__all__ = ["LogFollowers"]


class LogFollowers:
    """Threads that follow the logs of the jobs ``job_ids()`` names into :attr:`lines`.

    ``on_change`` is called (from those threads) after new lines or a job's end. With
    ``stop_when_ended`` the set is *done* once every job named has ended and asking
    ``job_ids()`` again names no new one; otherwise it keeps asking until closed.
    """

    def __init__(
        self,
        api: Api,
        job_ids: Callable[[], Iterable[int]],
        on_change: Callable[[], None],
        *,
        max_lines: int,
        max_streams: int = 8,
        refresh: float = 2.0,
        stop_when_ended: bool = True,
    ) -> None:
        self._api = api
        self._job_ids = job_ids
        self._on_change = on_change
        self._max_streams = max(1, max_streams)
        self._refresh = refresh
        self._stop_when_ended = stop_when_ended
        self._lock = threading.Lock()
        self._lines: deque[LogEntry] = deque(maxlen=max(1, max_lines))
        self._seen = 0
        self._known: set[int] = set()
        self._waiting: list[int] = []
        self._streams: dict[int, httpx.Client] = {}
        self.ended: set[int] = set()
        self.done = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="farside-logs", daemon=True)

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            clients = list(self._streams.values())
        for client in clients:  # a read blocked on a quiet stream returns at once
            client.close()

    def lines(self) -> tuple[list[LogEntry], int]:
        """The kept lines, oldest first, and how many earlier ones were dropped."""
        with self._lock:
            return list(self._lines), self._seen - len(self._lines)

    def jobs(self) -> tuple[int, int, int]:
        """Jobs known, being followed, ended."""
        with self._lock:
            return len(self._known), len(self._streams), len(self.ended)

    # --------------------------------------------------------------- threads

    def _run(self) -> None:
        next_ask = 0.0
        while not self._stop.is_set():
            asked = time.monotonic() >= next_ask
            if asked:
                self._ask()
                next_ask = time.monotonic() + self._refresh
            self._start_streams()
            with self._lock:
                idle = bool(self._known) and not self._waiting and not self._streams
            if idle and self._stop_when_ended and not self.error:
                if asked:  # everything named has ended, and asking again named nothing new
                    self.done = True
                    self._on_change()
                    return
                next_ask = 0.0
                continue
            self._on_change()
            self._wake.wait(max(0.0, next_ask - time.monotonic()))
            self._wake.clear()

    def _ask(self) -> None:
        try:
            ids = sorted(set(self._job_ids()))
            self.error = None
        except Exception as exc:
            ids, self.error = [], f"cannot list the jobs: {exc}"
        with self._lock:
            new = [i for i in ids if i not in self._known]
            self._known.update(new)
            self._waiting.extend(new)

    def _start_streams(self) -> None:
        with self._lock:
            while self._waiting and len(self._streams) < self._max_streams:
                job_id = self._waiting.pop(0)
                self._streams[job_id] = self._api.stream_client()
                threading.Thread(
                    target=self._follow, args=(job_id,), name=f"farside-logs {job_id}", daemon=True
                ).start()

    def _follow(self, job_id: int) -> None:
        client = self._streams[job_id]
        try:
            for line in follow_lines(self._api, job_id, stop=self._stop, client=client):
                self._add(LogEntry(job_id, line.stream, line.text.removesuffix("\n")))
        except Exception as exc:
            if not self._stop.is_set():
                self._add(LogEntry(job_id, "system", f"[farside] log stream failed: {exc}"))
        finally:
            client.close()
            with self._lock:
                self._streams.pop(job_id, None)
                self.ended.add(job_id)
            self._wake.set()  # a free place: start the next stream now
            self._on_change()

    def _add(self, entry: LogEntry) -> None:
        with self._lock:
            self._lines.append(entry)
            self._seen += 1
        self._on_change()
