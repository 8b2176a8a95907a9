"""The HTTP layer: one keep-alive ``httpx.Client`` per gateway, errors turned into exceptions.

Every failure leaves here as a member of the one exception tree: a gateway that does not
answer is :class:`~farside.GatewayUnreachable` (naming the address tried), an error
envelope is rebuilt with :func:`~farside_protocol.error_from_envelope`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, connect_sse
from pydantic import BaseModel

from farside_protocol import (
    API_PREFIX,
    ApiError,
    GatewayUnreachable,
    ServerError,
    Unauthorized,
    env,
    error_from_envelope,
)

from ._config import ClientConfig
from ._tokens import from_login, renewal

__all__ = ["Api"]

M = TypeVar("M", bound=BaseModel)

REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# the gateway pings event streams every few seconds; silence this long means a dead link
STREAM_TIMEOUT = httpx.Timeout(10.0, read=90.0)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({exc})" if str(exc) else "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class BearerAuth(httpx.Auth):
    """The bearer token, set on each request.

    A ``farside login`` token is looked up again for every request (the cache refreshes it
    with the refresh token when it is near expiry), so a notebook kernel outlives its
    first access token; other tokens are fixed.
    """

    def __init__(self, token: str, fresh: Callable[[str], str | None] | None = None) -> None:
        self.token = token
        self._fresh = fresh

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._fresh is not None:
            self.token = self._fresh(self.token) or self.token
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class Api:
    """Typed, thread-safe access to ``<url>/api/v1`` with a bearer token.

    ``transport`` is the test seam (``httpx.MockTransport``), as in httpx itself.
    """

    def __init__(self, config: ClientConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.url = config.url
        self._transport = transport
        self._headers = {"User-Agent": "farside-client"}
        self.from_login = from_login(config)
        self._auth = BearerAuth(config.token, renewal(config))
        self.client = self._new_client(REQUEST_TIMEOUT)

    def _new_client(self, timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + API_PREFIX,
            headers=self._headers,
            auth=self._auth,
            timeout=timeout,
            transport=self._transport,
        )

    def stream_client(self) -> httpx.Client:
        """A separate client for long-lived event streams (own pool, long read timeout)."""
        return self._new_client(STREAM_TIMEOUT)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ errors

    def unreachable(self, exc: httpx.TransportError) -> GatewayUnreachable:
        return GatewayUnreachable(self.url, _describe(exc))

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        error = error_from_envelope(response.status_code, body)
        if isinstance(error, Unauthorized):
            advice = (
                "run `farside login` again"
                if self.from_login
                else f"run `farside up` again for a local gateway, or set {env.TOKEN}"
            )
            error = Unauthorized(
                f"the farside gateway at {self.url} rejected the token from "
                f"{self.config.token_source} ({error.message or 'unauthorized'}). Get a fresh "
                f"token: {advice}.",
                error.details,
            )
        raise error

    # ---------------------------------------------------------------- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(method, path, json=json, params=clean or None)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        self.raise_for_status(response)
        return response

    def get(self, path: str, model: type[M], params: Mapping[str, Any] | None = None) -> M:
        return model.model_validate_json(self.request("GET", path, params=params).content)

    def post(self, path: str, body: BaseModel, model: type[M]) -> M:
        return self._send("POST", path, body, model)

    def put(self, path: str, body: BaseModel, model: type[M]) -> M:
        return self._send("PUT", path, body, model)

    def _send(self, method: str, path: str, body: BaseModel, model: type[M]) -> M:
        # unset fields stay unset on the wire: the gateway tells what the user chose (e.g.
        # memory) from what was left to it (which scouts may then correct)
        payload = body.model_dump(mode="json", exclude_unset=True)
        return model.model_validate_json(self.request(method, path, json=payload).content)

    def get_bytes(self, path: str) -> bytes:
        return self.request("GET", path).content

    @contextmanager
    def sse(
        self,
        client: httpx.Client,
        path: str,
        params: Mapping[str, Any] | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[EventSource]:
        """Open an event stream; HTTP errors raise as :class:`ApiError` before iteration."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        try:
            with connect_sse(client, "GET", path, params=params, headers=headers) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    self.raise_for_status(source.response)
                content_type = source.response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise ServerError(
                        f"the gateway at {self.url} answered {path} with {content_type!r}, "
                        "not an event stream; is this a farside gateway?"
                    )
                yield source
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc


def iter_messages(source: EventSource) -> Iterator[ServerSentEvent | None]:
    """The messages of an event stream, and ``None`` for each comment (a keep-alive).

    ``EventSource.iter_sse`` hides comments; a listener wants to see them, to notice that
    it was asked to stop while the stream is quiet.
    """
    event, last_id, buffer = "", "", ""
    data: list[str] = []
    for chunk in source.response.iter_text():
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for raw in lines:
            line = raw.removesuffix("\r")
            if not line:
                if data or event:
                    yield ServerSentEvent(event or "message", "\n".join(data), last_id)
                event, data = "", []
            elif line.startswith(":"):
                yield None
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    last_id = value


def is_retryable(exc: BaseException) -> bool:
    """Whether a stream should reconnect after ``exc`` (transport trouble or a 5xx)."""
    if isinstance(exc, GatewayUnreachable | httpx.TransportError):
        return True
    return isinstance(exc, ApiError) and exc.status >= 500
