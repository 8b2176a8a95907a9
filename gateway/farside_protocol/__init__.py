"""The wire contract between the farside client, gateway and pilot.

Client, gateway and pilot all import this package; it imports none of them. See ``states``
for job, pilot and site states and error classes (plain enums), ``models`` for the users'
REST bodies and ``pilot_api`` for the pilots', ``env`` for the ``FARSIDE_*`` variables,
``payload`` for what a job carries, ``errors`` for the exception tree and ``units`` for
memory and walltime strings.

Names load lazily (PEP 562): a job's worker process imports ``payload`` alone and so
stays free of pydantic, which only the HTTP side needs.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import env

try:
    # one version for client, gateway and pilot: the installed distribution's
    __version__ = version("farside")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
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
        WorkflowCancelled,
        error_from_envelope,
    )
    from .models import API_PREFIX, Resources
    from .states import (
        ACTIVE_STATES,
        TERMINAL_STATES,
        ErrorClass,
        JobState,
        PilotState,
        SiteStatus,
    )
    from .units import (
        format_memory,
        format_walltime,
        parse_memory,
        parse_walltime,
    )

_HOMES = {
    "ApiError": "errors",
    "ConfigurationError": "errors",
    "Conflict": "errors",
    "FarsideError": "errors",
    "Forbidden": "errors",
    "GatewayUnreachable": "errors",
    "InvalidRequest": "errors",
    "JobFailed": "errors",
    "MalformedRequest": "errors",
    "NotFound": "errors",
    "PayloadTooLarge": "errors",
    "RemoteError": "errors",
    "ServerError": "errors",
    "ServiceUnavailable": "errors",
    "TaskError": "errors",
    "Unauthorized": "errors",
    "WorkflowCancelled": "errors",
    "error_from_envelope": "errors",
    "ACTIVE_STATES": "states",
    "API_PREFIX": "models",
    "TERMINAL_STATES": "states",
    "ErrorClass": "states",
    "JobState": "states",
    "Resources": "models",
    "PilotState": "states",
    "SiteStatus": "states",
    "format_memory": "units",
    "format_walltime": "units",
    "parse_memory": "units",
    "parse_walltime": "units",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


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
    "PilotState",
    "RemoteError",
    "Resources",
    "ServerError",
    "ServiceUnavailable",
    "SiteStatus",
    "TaskError",
    "Unauthorized",
    "WorkflowCancelled",
    "__version__",
    "env",
    "error_from_envelope",
    "format_memory",
    "format_walltime",
    "parse_memory",
    "parse_walltime",
]
