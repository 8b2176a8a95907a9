"""farside: run Python functions from a notebook on distributed, heterogeneous resources.

>>> import farside
>>> gw = farside.Gateway()                           # doctest: +SKIP
>>> @farside.task(cores=1, memory="1 GiB", walltime="10m")
... def square(x):
...     return x * x
>>> square.submit(3).result(timeout=30)              # doctest: +SKIP
9
>>> list(square.map(range(5)))                       # doctest: +SKIP
[0, 1, 4, 9, 16]

The exception tree (shared with the gateway and the pilot)::

    FarsideError
    ├── GatewayUnreachable        the gateway did not answer (address in the message)
    ├── ApiError                  the gateway refused: InvalidRequest, Unauthorized,
    │                             Forbidden, NotFound, Conflict, PayloadTooLarge, ServerError
    ├── TaskError                 a task failed remotely: RemoteError, JobFailed,
    │                             WorkflowCancelled (a run was killed; run.retry())
    └── ConfigurationError        local configuration is missing or wrong
"""

from farside_protocol import (
    ApiError,
    ConfigurationError,
    Conflict,
    FarsideError,
    Forbidden,
    GatewayUnreachable,
    InvalidRequest,
    JobFailed,
    JobState,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    Resources,
    ServerError,
    TaskError,
    Unauthorized,
    WorkflowCancelled,
    __version__,
)

from ._client import Gateway, get_gateway
from ._config import ClientConfig, resolve_config
from ._futures import FarsideFuture, MapResult
from ._progress import progress
from ._task import Task, task
from ._workflow import Workflow, WorkflowRun, report, workflow

__all__ = [
    "ApiError",
    "ClientConfig",
    "ConfigurationError",
    "Conflict",
    "FarsideError",
    "FarsideFuture",
    "Forbidden",
    "Gateway",
    "GatewayUnreachable",
    "InvalidRequest",
    "JobFailed",
    "JobState",
    "MapResult",
    "NotFound",
    "PayloadTooLarge",
    "RemoteError",
    "Resources",
    "ServerError",
    "Task",
    "TaskError",
    "Unauthorized",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowRun",
    "__version__",
    "get_gateway",
    "progress",
    "report",
    "resolve_config",
    "task",
    "workflow",
]
