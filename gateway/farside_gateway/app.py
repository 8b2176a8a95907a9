"""The ASGI application: ``create_app(config)``.

Every endpoint under ``/api/v1`` needs a bearer token (a farside token or an OIDC access
token), except ``GET /api/v1/auth``, which tells clients how to log in, and ``GET /api/v1/health``
(for probes). ``/openapi.json``
and ``/docs`` describe the API and carry no data, so they are open.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from farside_protocol import API_PREFIX
from farside_protocol.models import ErrorEnvelope

from . import __version__, monitor
from .api import (
    auth,
    clusters,
    dashboards,
    dask_gateway,
    health,
    info,
    jobs,
    metrics,
    pilots,
    streams,
    workflows,
)
from .api.errors import BodyLimit, install_error_handlers
from .metrics import RequestTimer
from .runtime import Runtime

# every error has the same body; saying so here puts it in /openapi.json (and replaces
# FastAPI's own 422 schema, which this gateway never sends)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        400: "malformed request (not JSON)",
        401: "no or unknown bearer token",
        403: "the token may not do this",
        404: "no such job, pilot or endpoint",
        409: "conflict, e.g. a pilot reporting on a job it does not hold",
        413: "request body over the gateway's limit",
        422: "invalid request; the message says what is wrong",
    }.items()
}


def create_app(runtime: Runtime) -> FastAPI:
    web_monitor = monitor.LazyMonitor(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await web_monitor.close()
            await runtime.stop()

    app = FastAPI(
        title="farside gateway",
        version=__version__,
        description="The workload gateway: a durable pool of jobs, pilots that pull them, "
        "and event streams back to the user.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (jobs, streams, pilots, info, auth, health, clusters, workflows, metrics):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    # at the root, where dask-gateway users expect it: /clusters/{name}/status
    app.include_router(dashboards.router)
    # the stock dask_gateway client's API, under /dask-gateway
    app.include_router(dask_gateway.router)
    # the web monitor (Panel) at /monitor
    monitor.mount(app, web_monitor)
    # results are streamed to the blob store under their own limit (max_result_size)
    uploads = re.compile(r"/pilots/\d+/jobs/\d+/result$")
    app.add_middleware(BodyLimit, limit=runtime.config.max_request_size, exempt=uploads)
    app.add_middleware(RequestTimer, metrics=runtime.metrics)
    return app
