"""The one exception tree of farside, shared by client, gateway and pilot.

::

    FarsideError
    ├── GatewayUnreachable        the gateway did not answer (address in the message)
    ├── ApiError                  the gateway answered with an error envelope
    │   ├── InvalidRequest        422: the request says something impossible
    │   │   └── MalformedRequest  400: the body is not JSON at all
    │   ├── Unauthorized          401: no or unknown token
    │   ├── Forbidden             403: the token may not do this
    │   ├── NotFound              404
    │   ├── Conflict              409: e.g. a pilot reports on a job it does not hold
    │   ├── PayloadTooLarge       413
    │   └── ServerError           5xx
    │       └── ServiceUnavailable 503
    ├── TaskError                 a task failed remotely
    │   ├── RemoteError           it raised an exception whose type cannot be rebuilt here
    │   └── JobFailed             it failed for a reason other than raising (system error, ...)
    └── ConfigurationError        local configuration is missing or wrong

Every error that crosses HTTP is sent in one JSON envelope::

    {"error": {"code": "conflict", "message": "...", "details": {...}}}

``code`` maps one-to-one to a class here, so the client re-raises what the gateway raised.
Messages say what happened and what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FarsideError(Exception):
    """Base class of every error farside raises on purpose."""


class ConfigurationError(FarsideError):
    """Local configuration is missing or wrong (no gateway address, unreadable token, ...)."""


class GatewayUnreachable(FarsideError):
    """The gateway could not be reached at all."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the farside gateway at {url}: {reason}. "
            "Is it running? Start one with `farside up`, or set FARSIDE_GATEWAY_URL."
        )


class ApiError(FarsideError):
    """The gateway refused a request; ``code`` and ``status`` say why."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        self.message = message
        self.details = details or {}
        super().__init__(message)

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidRequest(ApiError):
    status = 422
    code = "invalid_request"


class MalformedRequest(InvalidRequest):
    status = 400
    code = "malformed_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


#: how the error of a job whose result the gateway refused begins; the client looks for it
#: (an offloaded graph's job then speaks of chunks)
RESULT_TOO_LARGE = "the result is too large for the gateway"


def result_too_large(size: int, limit: object) -> str:
    """The reason a job fails with when its result is over the gateway's limit."""
    return (
        f"{RESULT_TOO_LARGE}: {size} bytes, over its limit of {limit} bytes "
        "(the gateway's max_result_size); return less, e.g. write large outputs to storage "
        "and return their path"
    )


class ServerError(ApiError):
    status = 500
    code = "server_error"


class ServiceUnavailable(ServerError):
    status = 503
    code = "unavailable"


API_ERRORS: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        ApiError,
        InvalidRequest,
        MalformedRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ServerError,
        ServiceUnavailable,
    )
}


def error_from_envelope(status: int, body: Any) -> ApiError:
    """Rebuild the exception a gateway response describes (tolerates non-envelope bodies)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = API_ERRORS.get(str(err.get("code")), ApiError)
        return cls(str(err.get("message", "")), err.get("details") or {})
    for cls in API_ERRORS.values():
        if cls.status == status and cls not in (ApiError, MalformedRequest):
            return cls(f"HTTP {status}: {str(body)[:500]}")
    return ServerError(f"HTTP {status}: {str(body)[:500]}")


class TaskError(FarsideError):
    """A task did not produce a result."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        self.job_id = job_id
        super().__init__(message)


class RemoteError(TaskError):
    """The task raised an exception whose type could not be rebuilt in this process.

    ``type_name`` is the remote exception's qualified type and ``remote_traceback`` its
    formatted traceback.
    """

    def __init__(
        self, type_name: str, message: str, remote_traceback: str, job_id: int | None = None
    ) -> None:
        self.type_name = type_name
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}", job_id)


class JobFailed(TaskError):
    """The job failed without the function raising (system error, lost pilot, bad payload)."""

    def __init__(
        self, message: str, job_id: int | None = None, error_class: str | None = None
    ) -> None:
        self.error_class = error_class
        super().__init__(message, job_id)


class WorkflowCancelled(TaskError):
    """A workflow run was killed; ``run.retry()`` runs it again, reusing its finished calls."""
