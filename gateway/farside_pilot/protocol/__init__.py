"""The wire contract between the farside client, gateway and pilot.

Both sides import this package; nothing here imports the gateway. See ``models`` for the
REST bodies, ``env`` for the ``FARSIDE_*`` variables, ``payload`` for what a job carries,
``errors`` for the exception tree and ``units`` for memory and walltime strings.
"""

from . import env
from .errors import (
    ApiError,
    ConfigurationError,
    Conflict,
    FarsideError,
    Forbidden,
    GatewayUnreachable,
    InvalidRequest,
    JobFailed,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    ServerError,
    ServiceUnavailable,
    TaskError,
    Unauthorized,
    error_from_envelope,
)
from .models import (
    ACTIVE_STATES,
    API_PREFIX,
    TERMINAL_STATES,
    ErrorClass,
    JobState,
    Resources,
)
from .units import format_memory, format_walltime, parse_memory, parse_walltime

__all__ = [
    "ACTIVE_STATES",
    "API_PREFIX",
    "TERMINAL_STATES",
    "ApiError",
    "ConfigurationError",
    "Conflict",
    "ErrorClass",
    "FarsideError",
    "Forbidden",
    "GatewayUnreachable",
    "InvalidRequest",
    "JobFailed",
    "JobState",
    "MalformedRequest",
    "NotFound",
    "PayloadTooLarge",
    "RemoteError",
    "Resources",
    "ServerError",
    "ServiceUnavailable",
    "TaskError",
    "Unauthorized",
    "env",
    "error_from_envelope",
    "format_memory",
    "format_walltime",
    "parse_memory",
    "parse_walltime",
]
