"""The event listener: SSE parsing, hello before submission, reconnection with Last-Event-ID."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import EventSource

import farside
from farside._config import ClientConfig
from farside._events import EventListener
from farside._http import Api, iter_messages
from farside_protocol.models import EventBatch, JobEvent


def event(seq: int, job_id: int, state: str = "finished") -> JobEvent:
    return JobEvent.model_validate(
        {"seq": seq, "job_id": job_id, "state": state, "time": 0.0, "attempt": 1}
    )


def sse(name: str, data: object, id: int | None = None) -> bytes:
    head = f"event: {name}\n" + (f"id: {id}\n" if id is not None else "")
    return (head + f"data: {json.dumps(data)}\n\n").encode()


def batch(*events: JobEvent) -> object:
    return json.loads(EventBatch(events=list(events)).model_dump_json())


def api(handler: object) -> Api:
    config = ClientConfig("http://gw", "tok", "test", "test")
    return Api(config, httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_iter_messages_handles_split_chunks_comments_and_crlf() -> None:
    chunks = [
        b"event: hel",
        b'lo\r\ndata: {"head"',
        b": 3}\r\n\r\n: ping\n\n",
        b"id: 7\n",
        b"event: jobs\ndata: a\ndata: b\n\n",
    ]
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(chunks)
    )
    messages = list(iter_messages(EventSource(response)))
    assert messages[1] is None  # the ping
    hello, jobs = messages[0], messages[2]
    assert hello is not None
    assert jobs is not None
    assert (hello.event, json.loads(hello.data)) == ("hello", {"head": 3})
    assert (jobs.event, jobs.data, jobs.id) == ("jobs", "a\nb", "7")


def test_reconnects_with_last_event_id() -> None:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            body = [
                sse("hello", {"head": 10}),
                b": ping\n\n",
                sse("jobs", batch(event(11, 1), event(12, 2)), id=12),
            ]  # then the connection drops
        else:
            body = [sse("hello", {"head": 20}), sse("jobs", batch(event(13, 3)), id=13)]
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=iter(body)
        )

    received: list[int] = []
    got_all = threading.Event()

    def on_events(events: list[JobEvent]) -> None:
        received.extend(e.seq for e in events)
        if 13 in received:
            got_all.set()

    listener = EventListener(api(handle), on_events, min_backoff=0.01)
    listener.start(timeout=5)
    try:
        assert got_all.wait(5)
    finally:
        listener.close()
    assert received[:3] == [11, 12, 13]
    assert requests[0].url.params["terminal_only"] == "true"
    assert "last-event-id" not in requests[0].headers
    assert requests[1].headers["last-event-id"] == "12"
    assert requests[0].headers["accept"] == "text/event-stream"


def test_start_raises_why_the_stream_does_not_open() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})

    listener = EventListener(api(handle), lambda events: None, min_backoff=0.01)
    with pytest.raises(farside.Unauthorized, match="rejected the token"):
        listener.start(timeout=0.5)
    listener.close()


def test_not_an_event_stream_is_an_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    listener = EventListener(api(handle), lambda events: None, min_backoff=0.01)
    with pytest.raises(farside.ServerError, match="not an event stream"):
        listener.start(timeout=0.5)
    listener.close()


def test_stream_ended_by_close_stops_the_thread() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield sse("hello", {"head": 0})
            while True:
                yield b": ping\n\n"

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    listener = EventListener(api(handle), lambda events: None)
    listener.start(timeout=5)
    assert listener.running
    listener.close()
    assert not listener.running
