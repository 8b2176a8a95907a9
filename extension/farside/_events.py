"""The event listener: one background thread per gateway holding ``GET /events``.

Futures resolve from this server-sent event stream, never from a poll loop. The stream
opens with ``event: hello`` (``{"head": seq}``, the newest event at connection time) and
then carries ``event: jobs`` messages (an :class:`EventBatch`, ``id:`` its last sequence
number) and ``: ping`` comments. When the link drops — the gateway restarted, a proxy timed
out — the listener reconnects with backoff and sends ``Last-Event-ID``, and the gateway
replays what was missed from its database, so no terminal event is lost.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import httpx

from farside_protocol import FarsideError
from farside_protocol.models import EventBatch, JobEvent

from ._http import Api, is_retryable, iter_messages

__all__ = ["EventListener"]

log = logging.getLogger("farside")

EVENTS_PATH = "/events"


class EventListener:
    """Follow ``GET /events?terminal_only=true`` and hand each batch to ``on_events``.

    ``start()`` returns once the first ``hello`` arrived, so any job submitted afterwards
    is covered by the stream. ``last_seq`` is the newest sequence number seen (the
    ``Last-Event-ID`` of the next reconnection).
    """

    def __init__(
        self,
        api: Api,
        on_events: Callable[[list[JobEvent]], None],
        *,
        terminal_only: bool = True,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._api = api
        self._on_events = on_events
        self._params = {"terminal_only": "true" if terminal_only else "false"}
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._hello = threading.Event()
        self._lock = threading.Lock()
        self.last_seq: int | None = None
        self.last_error: BaseException | None = None
        self.connections = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread (once) and wait until the stream said hello.

        Raises the error that kept the stream from opening (e.g. :class:`GatewayUnreachable`,
        :class:`Unauthorized`) if no hello arrived within ``timeout`` seconds.
        """
        with self._lock:
            if self._thread is None:
                self._client = self._api.stream_client()
                self._thread = threading.Thread(
                    target=self._run, name=f"farside-events {self._api.url}", daemon=True
                )
                self._thread.start()
        if self._hello.wait(timeout):
            return
        if self.last_error is not None:
            raise self.last_error
        raise FarsideError(
            f"the event stream of the farside gateway at {self._api.url} did not open within "
            f"{timeout:g}s"
        )

    def close(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            try:
                if self._follow():
                    backoff = self._min_backoff
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.last_error = exc
                level = logging.INFO if is_retryable(exc) else logging.WARNING
                log.log(level, "event stream of %s dropped (%s); reconnecting", self._api.url, exc)
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _follow(self) -> bool:
        """Read one connection until it ends; True if it said hello (the link was good)."""
        assert self._client is not None
        last_id = str(self.last_seq) if self.last_seq is not None else None
        greeted = False
        with self._api.sse(self._client, EVENTS_PATH, self._params, last_id) as source:
            self.connections += 1
            for message in iter_messages(source):
                if self._stop.is_set():
                    return greeted
                if message is None:
                    continue
                if message.event == "hello":
                    greeted = True
                    if self.last_seq is None:
                        self.last_seq = int(json.loads(message.data)["head"])
                    self.last_error = None
                    self._hello.set()
                elif message.event == "jobs":
                    batch = EventBatch.model_validate_json(message.data)
                    if batch.events:
                        self._on_events(batch.events)
                    newest = max((e.seq for e in batch.events), default=self.last_seq)
                    self.last_seq = int(message.id) if message.id else newest
        return greeted
