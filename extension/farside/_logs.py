"""Reading a job's output: a page at a time, or followed live over server-sent events."""

from __future__ import annotations

import time
from collections.abc import Iterator

from farside_pilot.protocol import FarsideError
from farside_pilot.protocol.models import LogLine, LogPage

from ._http import Api, is_retryable, iter_messages

__all__ = ["follow_logs", "read_logs"]

# how long a followed log keeps reconnecting to a gateway that went away
FOLLOW_GRACE = 300.0


def _text(line: LogLine) -> str:
    return line.text[:-1] if line.text.endswith("\n") else line.text


def read_logs(api: Api, job_id: int, since: int = 0) -> list[str]:
    """Every line the job printed so far (stdout, stderr and the pilot's own notes)."""
    lines: list[str] = []
    while True:
        page = api.get(f"/jobs/{job_id}/logs", LogPage, params={"since": since})
        lines.extend(_text(line) for line in page.lines)
        if not page.lines or page.next_seq <= since:
            return lines
        since = page.next_seq


def follow_logs(
    api: Api, job_id: int, since: int = 0, *, grace: float = FOLLOW_GRACE
) -> Iterator[str]:
    """Yield lines as the job prints them; the iteration ends when the job has ended.

    A dropped stream is reopened from the last line seen (``since``), for up to ``grace``
    seconds of consecutive failures.
    """
    client = api.stream_client()
    backoff, failing_since = 0.1, None
    try:
        while True:
            try:
                path = f"/jobs/{job_id}/logs/stream"
                with api.sse(client, path, params={"since": since}) as source:
                    for message in iter_messages(source):
                        if message is None or message.event != "logs":
                            continue
                        failing_since, backoff = None, 0.1
                        page = LogPage.model_validate_json(message.data)
                        for line in page.lines:
                            yield _text(line)
                        since = max(since, page.next_seq)
                        if page.ended:
                            return
            except FarsideError as exc:
                if not is_retryable(exc):
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > grace:
                    raise
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    finally:
        client.close()
