"""The worker process's output: its message channel to the pilot, and what a job prints.

A job's lines go to the pilot as ``("log", job_id, stream, time, text)`` messages (see
:mod:`farside_pilot.worker`) on the same channel as its result, so every line of a job
reaches the pilot before the result does. :class:`LineWriter` replaces ``sys.stdout`` and
``sys.stderr``; :class:`FdCapture` catches what is written straight to file descriptors 1
and 2 (C code, subprocesses).

Like the worker, this module imports only the standard library.
"""

from __future__ import annotations

import ctypes
import io
import os
import pickle
import select
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_SYNC_MARK = b"\x00farside-sync\x00"


class Channel:
    """The worker's end of the message pipe; threads share it, so writes are locked."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.job_id: int | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._conn.send_bytes(data)

    def log(self, stream: str, text: str) -> None:
        job_id = self.job_id
        if job_id is not None:
            self.send(("log", job_id, stream, time.time(), text))


class LineWriter(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` replacement that forwards whole lines to the pilot."""

    def __init__(self, channel: Channel, stream: str) -> None:
        super().__init__()
        self._channel = channel
        self._stream = stream
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            data = self._partial + text
            *lines, self._partial = data.split("\n")
        for line in lines:
            self._channel.log(self._stream, line)
        return len(text)

    def end_job(self) -> None:
        """Flush a partial last line; called when the job ends."""
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            self._channel.log(self._stream, partial)


class FdCapture:
    """Captures output written straight to file descriptor 1 or 2 (C code, subprocesses).

    Best effort: a thread drains a pipe dup2'ed onto the descriptor. :meth:`sync` writes a
    marker through the pipe and waits until the thread has passed it, so output of a job is
    forwarded before its result.
    """

    def __init__(self, channel: Channel, fd: int, stream: str) -> None:
        self._channel = channel
        self._stream = stream
        self._fd = fd
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        self._read_fd = read_fd
        self._synced = threading.Event()
        self._pending = b""
        self._busy = False
        threading.Thread(target=self._drain, name=f"capture-{stream}", daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._busy = True
            data = self._pending + chunk
            synced = False
            if _SYNC_MARK in data:
                data = data.replace(_SYNC_MARK, b"")
                synced = True
            *lines, self._pending = data.split(b"\n")
            if synced and self._pending:
                lines.append(self._pending)
                self._pending = b""
            for line in lines:
                self._channel.log(self._stream, line.decode("utf-8", "replace"))
            self._busy = False
            if synced:
                self._synced.set()

    def sync(self, timeout: float = 1.0) -> None:
        # A round trip through the drain thread costs more than a no-op job: skip it when
        # nothing was written since the last one.
        idle = not self._busy and not self._pending
        if idle and not select.select([self._read_fd], [], [], 0)[0]:
            return
        self._synced.clear()
        try:
            os.write(self._fd, _SYNC_MARK)
        except OSError:
            return
        self._synced.wait(timeout)


def c_fflush() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(None)
        return lambda: libc.fflush(None)
    except (OSError, AttributeError):
        return None
