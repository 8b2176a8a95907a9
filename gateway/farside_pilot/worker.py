"""The worker process: runs one job at a time, isolated from the pilot's own state.

Started by :class:`farside_pilot.workers.WorkerProcess` as
``python -m farside_pilot.worker IN_FD OUT_FD``. It reads ``("run", job_id, payload,
scratch_dir, inputs, kind)`` and ``("stop",)`` messages from ``IN_FD`` and writes to ``OUT_FD``
(``inputs``: None, or the outcome bytes of the job's input jobs by job id, decoded here
because the pilot itself never unpickles user data; ``kind``: ``function``, or
``dask-worker`` for a lease that runs a Dask worker, see :mod:`farside_pilot.dask_worker`):

* ``("ready", pid)`` once, after start-up;
* ``("log", job_id, stream, time, text)`` for each line the job prints;
* ``("done", job_id, JobOutcome)`` when the job ended.

Lines and results share one channel, so every line of a job reaches the pilot before its
result (see :mod:`farside_pilot.worker_output`). The worker is reused for many jobs; it
caches unpickled functions by digest because a map sends the same function bytes thousands
of times.

This module imports only the standard library, ``protocol.payload`` (cloudpickle) and the
pilot's own stdlib-only helpers: what a job needs it imports itself.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import resource
import shutil
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

from farside_protocol.payload import (
    PayloadError,
    decode_call,
    decode_outcome,
    encode_exception,
    encode_value,
    substitute_inputs,
)

from .lifeline import watch_parent
from .worker_output import Channel, FdCapture, LineWriter, c_fflush

FUNCTION_CACHE_SIZE = 32
Stream = Literal["stdout", "stderr", "system"]


@dataclass
class JobOutcome:
    """What the worker measured and produced for one job (pickled to the pilot)."""

    exit_code: int
    error_class: str | None
    error: str | None
    result: bytes | None
    wall_time: float
    cpu_time: float
    max_rss: int | None
    #: with error_class "resource": "memory" or "walltime"
    resource: str | None = None


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _PeakRss:
    """Peak memory of each job in a reused worker.

    Writing "5" to /proc/self/clear_refs resets VmHWM (Linux >= 4.0), so each job is measured
    alone. Both files stay open: re-opening them per job cost more than a no-op job.
    Elsewhere, the process's lifetime peak (ru_maxrss) is the best there is.
    """

    def __init__(self) -> None:
        try:
            self._clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
            self._status: int | None = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:
            self._clear = self._status = None

    def reset(self) -> None:
        if self._clear is not None:
            try:
                os.write(self._clear, b"5")
            except OSError:
                self._clear = None

    def read(self) -> int | None:
        if self._clear is not None and self._status is not None:
            try:
                data = os.pread(self._status, 8192, 0)
                start = data.index(b"VmHWM:") + 6
                return int(data[start : data.index(b"kB", start)]) * 1024
            except (OSError, ValueError):
                pass
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss * 1024 if sys.platform != "darwin" else rss


def _empty(directory: str) -> None:
    # The scratch directory is kept between jobs (creating one per job costs more than a
    # no-op job); only what a job left behind is removed.
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class _Failure(Exception):
    """The job could not be started: carries its error class and message."""

    def __init__(self, error_class: str, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.cause = cause


class Worker:
    """Runs jobs sent over the channel; one instance per worker process."""

    def __init__(self, conn_in: Connection, channel: Channel, capture_fds: bool = True) -> None:
        self._in = conn_in
        self._channel = channel
        self._functions: OrderedDict[str, Any] = OrderedDict()
        self._stdout = LineWriter(channel, "stdout")
        self._stderr = LineWriter(channel, "stderr")
        self._captures: list[FdCapture] = []
        if capture_fds:
            self._captures = [FdCapture(channel, 1, "stdout"), FdCapture(channel, 2, "stderr")]
        sys.stdout = self._stdout
        sys.stderr = self._stderr
        # `farside debug JOB`: the pilot sends SIGUSR1 and every thread's stack goes to
        # file descriptor 2, which is captured into the running job's log
        faulthandler.register(signal.SIGUSR1, file=2, all_threads=True)
        self._home = os.getcwd()
        self._peak = _PeakRss()
        self._fflush = c_fflush()

    def serve(self) -> None:
        self._channel.send(("ready", os.getpid()))
        while True:
            try:
                message = pickle.loads(self._in.recv_bytes())
            except EOFError:
                return
            if message[0] == "stop":
                return
            _, job_id, payload, scratch, inputs, kind = message
            self._run(job_id, payload, scratch, inputs, kind)

    def _load_function(self, data: bytes, digest: str) -> Any:
        fn = self._functions.get(digest)
        if fn is not None:
            self._functions.move_to_end(digest)
            return fn
        fn = pickle.loads(data)
        self._functions[digest] = fn
        if len(self._functions) > FUNCTION_CACHE_SIZE:
            self._functions.popitem(last=False)
        return fn

    def _prepare(
        self, payload: bytes, inputs: dict[int, bytes] | None, kind: str, scratch: str
    ) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        if kind == "dask-worker":
            # imported here: distributed is needed on the pilot only for Dask-worker leases
            try:
                from .dask_worker import serve
            except ImportError as exc:
                raise _Failure(
                    "system",
                    f"this site cannot run Dask workers: {_short(exc)}; install "
                    "'dask[distributed]' in the pilot's environment",
                    exc,
                ) from exc
            return serve, (payload, scratch), {}
        try:
            call = decode_call(payload)
        except PayloadError as exc:
            raise _Failure("system", f"cannot decode the job's payload: {exc}", exc) from exc
        try:
            fn = self._load_function(call.function, call.function_digest)
            args, kwargs = pickle.loads(call.arguments)
        except ModuleNotFoundError as exc:
            raise _Failure(
                "user",
                f"module {exc.name!r} is not importable on the pilot: ship it with the job "
                "or install it on the site",
                exc,
            ) from exc
        except Exception as exc:
            raise _Failure("user", f"cannot unpickle the call: {_short(exc)}", exc) from exc
        if inputs:
            values = {parent: _input_value(parent, data) for parent, data in inputs.items()}
            try:
                args, kwargs = substitute_inputs((args, kwargs), values)
            except PayloadError as exc:
                raise _Failure("user", str(exc), exc) from exc
        return fn, tuple(args), dict(kwargs)

    def _run(
        self,
        job_id: int,
        payload: bytes,
        scratch: str,
        inputs: dict[int, bytes] | None = None,
        kind: str = "function",
    ) -> None:
        if not os.path.isdir(scratch):  # makedirs(exist_ok) raises and catches every time
            os.makedirs(scratch, exist_ok=True)
        os.chdir(scratch)
        self._channel.job_id = job_id
        self._peak.reset()
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        exit_code, error_class, error = 0, None, None
        try:
            fn, args, kwargs = self._prepare(payload, inputs, kind, scratch)
            value = fn(*args, **kwargs)
            result = encode_value(value)
        except _Failure as failure:
            exit_code, error_class, error = 1, failure.error_class, str(failure)
            result = encode_exception(failure.cause)
        except BaseException as exc:  # the job's own exception, whatever it is
            exit_code, error_class, error = 1, "user", _short(exc)
            result = encode_exception(exc)
        wall = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
        peak = self._peak.read()
        self._end_output()
        self._channel.job_id = None
        outcome = JobOutcome(exit_code, error_class, error, result, wall, cpu, peak)
        self._channel.send(("done", job_id, outcome))
        os.chdir(self._home)
        _empty(scratch)

    def _end_output(self) -> None:
        # Jobs may have swapped the streams; put ours back for the next job.
        sys.stdout, sys.stderr = self._stdout, self._stderr
        self._stdout.end_job()
        self._stderr.end_job()
        if self._captures:
            if self._fflush is not None:
                self._fflush()
            for capture in self._captures:
                capture.sync()


def _input_value(parent: int, data: bytes) -> Any:
    try:
        ok, value = decode_outcome(data)
    except PayloadError as exc:
        raise _Failure("user", f"cannot load the result of input job {parent}: {exc}", exc) from exc
    if not ok:
        # the gateway hands out only finished parents' outcomes; an error one is a bug there
        error = PayloadError(f"input job {parent} ended in an error, not a value")
        raise _Failure("system", str(error), error)
    return value


def main(argv: list[str]) -> None:
    in_fd, out_fd = int(argv[0]), int(argv[1])
    conn_in = Connection(in_fd, writable=False)
    channel = Channel(Connection(out_fd, readable=False))
    watch_parent()
    Worker(conn_in, channel).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
