"""The ASGI application: ``create_app(config)``.

Every endpoint under ``/api/v1`` needs a bearer token. ``/openapi.json`` and ``/docs``
describe the API and carry no data, so they are open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from farside_pilot.protocol import API_PREFIX

from . import __version__
from .api import info, jobs, pilots, streams
from .api.errors import BodyLimit, install_error_handlers
from .runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
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
    for module in (jobs, streams, pilots, info):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(BodyLimit, limit=runtime.config.max_request_size)
    return app
