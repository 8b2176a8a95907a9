"""The pilot's HTTP client for the gateway's pilot API.

Every call retries connection errors and 5xx answers with jittered, capped backoff for up to
``grace`` seconds, so a gateway restart costs the pilot nothing: running jobs go on, and
their reports go out when the gateway is back. Other errors are raised at once as the
:mod:`farside_protocol.errors` class the gateway's envelope names.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from farside_protocol.errors import ApiError, GatewayUnreachable, ServerError, error_from_envelope
from farside_protocol.models import API_PREFIX
from farside_protocol.pilot_api import (
    AcquireRequest,
    AcquireResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    PilotExit,
    PilotRegistered,
    PilotRegistration,
    ReleaseRequest,
    ReleaseResponse,
    ReportRequest,
    ReportResponse,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_BACKOFF = 4.0
# Long polls are answered after ``wait`` seconds; allow this much more before giving up.
POLL_MARGIN = 30.0


class GatewayClient:
    """Calls the pilot endpoints; one instance per pilot, shared by its loops."""

    def __init__(self, url: str, token: str, grace: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.grace = grace
        self.pilot_id: int | None = None
        self._http = httpx.AsyncClient(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def set_token(self, token: str) -> None:
        self._http.headers["Authorization"] = f"Bearer {token}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        content_type: str = "application/octet-stream",
        params: dict[str, Any] | None = None,
        read_timeout: float | None = None,
        grace: float | None = None,
    ) -> httpx.Response:
        """Send one request, retrying what a gateway restart would cause."""
        grace = self.grace if grace is None else grace
        deadline = time.monotonic() + grace
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    content=content,
                    params=params,
                    headers={"Content-Type": content_type} if content else None,
                    timeout=httpx.USE_CLIENT_DEFAULT if read_timeout is None else read_timeout,
                )
            except httpx.TransportError as exc:
                error: Exception = GatewayUnreachable(self.url, str(exc) or type(exc).__name__)
            else:
                if response.status_code < 400:
                    return response
                error = _api_error(response)
                if not isinstance(error, ServerError):
                    raise error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise error
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "%s %s failed (%s); retrying for %.0f s", method, path, error, remaining
                )
            await asyncio.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
            delay = min(MAX_BACKOFF, delay * 2)

    async def _call(self, path: str, body: BaseModel, answer: type[M], wait: float = 0.0) -> M:
        # pydantic writes the JSON itself, several times faster than dump + json.dumps
        response = await self.request(
            "POST",
            path,
            content=body.model_dump_json().encode(),
            content_type="application/json",
            read_timeout=wait + POLL_MARGIN,
        )
        return answer.model_validate_json(response.content)

    def _pilot(self, suffix: str) -> str:
        if self.pilot_id is None:
            raise RuntimeError("the pilot is not registered")
        return f"/pilots/{self.pilot_id}{suffix}"

    async def register(self, body: PilotRegistration) -> PilotRegistered:
        registered = await self._call("/pilots", body, PilotRegistered)
        self.pilot_id = registered.pilot_id
        self.set_token(registered.token)
        return registered

    async def acquire(self, body: AcquireRequest) -> AcquireResponse:
        return await self._call(self._pilot("/acquire"), body, AcquireResponse, body.wait)

    async def heartbeat(self, body: HeartbeatRequest) -> HeartbeatResponse:
        return await self._call(self._pilot("/heartbeat"), body, HeartbeatResponse, body.wait)

    async def release(self, body: ReleaseRequest) -> ReleaseResponse:
        return await self._call(self._pilot("/release"), body, ReleaseResponse)

    async def report(self, body: ReportRequest) -> ReportResponse:
        return await self._call(self._pilot("/report"), body, ReportResponse)

    async def payload(self, job_id: int) -> bytes:
        response = await self.request("GET", self._pilot(f"/jobs/{job_id}/payload"))
        return response.content

    async def inputs(self, job_id: int, parents: list[int]) -> dict[int, bytes]:
        """The outcome bytes of a held job's input jobs, fetched side by side."""
        answers = await asyncio.gather(
            *(self.request("GET", self._pilot(f"/jobs/{job_id}/inputs/{p}")) for p in parents)
        )
        return {p: answer.content for p, answer in zip(parents, answers, strict=True)}

    async def upload_result(self, job_id: int, attempt: int, data: bytes) -> None:
        await self.request(
            "PUT", self._pilot(f"/jobs/{job_id}/result"), content=data, params={"attempt": attempt}
        )

    async def exit(self, reason: str, grace: float) -> None:
        body = PilotExit(reason=reason[:2000]).model_dump(mode="json")
        await self.request("POST", self._pilot("/exit"), json=body, grace=grace)


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_envelope(response.status_code, body)
