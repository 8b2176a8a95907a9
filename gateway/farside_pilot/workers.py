"""The pilot's handle on worker processes (see :mod:`farside_pilot.worker`).

A :class:`WorkerProcess` starts ``farside_pilot.worker`` in its own session (so killing its
process group also kills whatever the job started), sends it jobs over a pipe and reads its
messages on a thread, handing each to ``on_message``. When the process dies, ``on_message``
gets ``("exited", returncode)``; the pilot decides what that means for the job it ran.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

Message = tuple[Any, ...]
_LAUNCH = "import sys; from farside_pilot.worker import main; main(sys.argv[1:])"


class WorkerProcess:
    """One persistent worker process; it runs the jobs it is sent one after another."""

    def __init__(
        self,
        on_message: Callable[[WorkerProcess, Message], None],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._on_message = on_message
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send_conn = Connection(to_child_w, readable=False)
        self._recv_conn = Connection(from_child_r, writable=False)
        self._send_lock = threading.Lock()
        self.job_id: int | None = None
        self.killed = False
        #: set once the worker has started serving (its signal handlers are in place)
        self.serving = threading.Event()
        #: runs one job, then stops (a GPU job's worker, started with its devices)
        self.single_use = False
        self._reader = threading.Thread(
            target=self._read, name=f"worker-{self.process.pid}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        while True:
            try:
                data = self._recv_conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                message = pickle.loads(data)
            except Exception:
                log.exception("worker %s sent an unreadable message", self.pid)
                continue
            if message[0] == "ready":
                self.serving.set()
            self._on_message(self, message)
        returncode = self.process.wait()
        self._recv_conn.close()
        self._on_message(self, ("exited", returncode))

    def run(
        self,
        job_id: int,
        payload: bytes,
        scratch: str,
        inputs: dict[int, bytes] | None = None,
        kind: str = "function",
    ) -> None:
        """Send a job (and its inputs' outcome bytes); may block while a large one goes
        through the pipe."""
        self.job_id = job_id
        message = ("run", job_id, payload, scratch, inputs, kind)
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._send_conn.send_bytes(data)

    def stop(self) -> None:
        """Ask the worker to exit after its current job."""
        with contextlib.suppress(OSError), self._send_lock:
            self._send_conn.send_bytes(pickle.dumps(("stop",)))

    def kill(self) -> None:
        """Kill the worker and everything its job started (its whole process group)."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_conn.close()

    def join(self, timeout: float | None = None) -> None:
        self._reader.join(timeout)


def describe_exit(returncode: int) -> str:
    """Say in words how a worker process ended."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with status {returncode}"
