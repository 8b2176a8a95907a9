"""Reading a job's output: a page at a time, or followed live over server-sent events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx

from farside_protocol import FarsideError
from farside_protocol.clusters import ClusterLogs
from farside_protocol.models import LogLine, LogPage

from ._http import Api, is_retryable, iter_messages

__all__ = ["follow_lines", "follow_logs", "read_logs", "stack_dump"]

# how long a followed log keeps reconnecting to a gateway that went away
FOLLOW_GRACE = 300.0


def _text(line: LogLine) -> str:
    return line.text[:-1] if line.text.endswith("\n") else line.text


def _pages(api: Api, job_id: int, since: int = 0) -> Iterator[LogPage]:
    """The job's log so far, a page at a time from after line ``since``."""
    while True:
        page = api.get(f"/jobs/{job_id}/logs", LogPage, params={"since": since})
        if not page.lines or page.next_seq <= since:
            return
        yield page
        since = page.next_seq


def read_logs(api: Api, job_id: int, since: int = 0) -> list[str]:
    """Every line the job printed so far (stdout, stderr and the pilot's own notes)."""
    return [_text(line) for page in _pages(api, job_id, since) for line in page.lines]


def _log_end(api: Api, job_id: int) -> int:
    """The sequence number of the job's last line so far (0: none)."""
    end = 0
    for page in _pages(api, job_id):
        end = page.next_seq
    return end


#: how faulthandler heads each thread's stack
_DUMP_HEADER = "(most recent call first)"


def stack_dump(api: Api, job_id: int, timeout: float = 30.0) -> list[str]:
    """Ask for a running job's stack dump and return it: the job's new stderr lines from
    the first thread header on, once they stop coming. Raises TimeoutError if no dump
    arrives within ``timeout`` (the pilot gets the request with its next heartbeat)."""
    since = _log_end(api, job_id)
    api.request("POST", f"/jobs/{job_id}/debug")
    deadline = time.monotonic() + timeout
    dump: list[str] = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        page = api.get(f"/jobs/{job_id}/logs", LogPage, params={"since": since})
        fresh = [_text(line) for line in page.lines if line.stream == "stderr"]
        if page.lines:
            since = page.next_seq
            quiet_since = time.monotonic()
        if dump or any(_DUMP_HEADER in line for line in fresh):
            start = 0 if dump else next(i for i, t in enumerate(fresh) if _DUMP_HEADER in t)
            dump.extend(fresh[start:])
        if dump and time.monotonic() - quiet_since > 0.5:
            return dump
        time.sleep(0.1)
    if dump:
        return dump
    raise TimeoutError(f"no stack dump of job {job_id} arrived within {timeout:g}s")


def follow_logs(
    api: Api, job_id: int, since: int = 0, *, grace: float = FOLLOW_GRACE
) -> Iterator[str]:
    """Yield lines as the job prints them; the iteration ends when the job has ended.

    A dropped stream is reopened from the last line seen (``since``), for up to ``grace``
    seconds of consecutive failures.
    """
    for line in follow_lines(api, job_id, since, grace=grace):
        yield _text(line)


def follow_lines(
    api: Api,
    job_id: int,
    since: int = 0,
    *,
    grace: float = FOLLOW_GRACE,
    stop: threading.Event | None = None,
    client: httpx.Client | None = None,
) -> Iterator[LogLine]:
    """:func:`follow_logs` with each line's stream (stdout, stderr, system) and number.

    Another thread ends the iteration by setting ``stop`` and closing ``client`` (a
    :meth:`Api.stream_client`, which a blocked read then leaves at once); a ``client``
    passed in is the caller's to close.
    """
    stop = stop or threading.Event()
    own_client = client is None
    client = client or api.stream_client()
    backoff, failing_since = 0.1, None
    try:
        while not stop.is_set():
            try:
                path = f"/jobs/{job_id}/logs/stream"
                with api.sse(client, path, params={"since": since}) as source:
                    for message in iter_messages(source):
                        if stop.is_set():
                            return
                        if message is None or message.event != "logs":
                            continue
                        failing_since, backoff = None, 0.1
                        page = LogPage.model_validate_json(message.data)
                        yield from page.lines
                        since = max(since, page.next_seq)
                        if page.ended:
                            return
            except Exception as exc:
                if stop.is_set():  # the client was closed under a blocked read
                    return
                if not isinstance(exc, FarsideError) or not is_retryable(exc):
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > grace:
                    raise
            if stop.wait(backoff):
                return
            backoff = min(backoff * 2, 5.0)
    finally:
        if own_client:
            client.close()


def cluster_lines(api: Api, name: str, tail: int = 1000) -> list[str]:
    """The last ``tail`` lines of each of a cluster's workers (live and recently ended),
    each prefixed with its worker: ``GET /clusters/{name}/logs``."""
    return api.get(f"/clusters/{name}/logs", ClusterLogs, {"tail": tail}).lines
