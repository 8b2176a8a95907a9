"""The web monitor at ``/monitor`` (Panel, served by the gateway itself).

- :mod:`.login`: the browser's way in (a token once, then a sealed session cookie);
- :mod:`.oidc_login`: or the OIDC issuer's login page (authorization code with PKCE);
- :mod:`.queries`: what the pages show, read from the pool;
- :mod:`.render`: those numbers as HTML tables;
- :mod:`.views`: the Panel page, redrawn live as the user's jobs change.

Panel (through bokeh-fastapi) serves a Bokeh server on a FastAPI app of its own, mounted
at ``/monitor``: the page at ``/monitor/``, its websocket at ``/monitor/ws``, its files
under ``/monitor/static``. Importing Panel costs over a second of CPU, so it happens at the
first visit, not at every gateway start. Panel is in the ``gateway`` extra; without it the
monitor answers 503 and says what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from ..runtime import Runtime
from .login import PATH
from .login import router as login_router
from .oidc_login import router as oidc_router

log = logging.getLogger(__name__)


def _import_panel() -> Any:
    from panel.io.fastapi import add_applications

    from . import views  # noqa: F401  (imports Panel too)

    return add_applications


class LazyMonitor:
    """An ASGI app that builds the Panel app on its first request, then hands every
    request to it."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._app: FastAPI | None = None
        self._missing: str | None = None
        self._lock = asyncio.Lock()
        self._lifespan: contextlib.AbstractAsyncContextManager[Any] | None = None

    async def _build(self) -> None:
        try:
            add_applications = await asyncio.to_thread(_import_panel)
        except ImportError as exc:
            self._missing = f"{exc}; pip install 'farside[gateway]'"
            log.warning("no web monitor at %s: %s", PATH, self._missing)
            return
        from .views import page_for

        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        # the page's websocket comes from the page the gateway served, under whatever name
        # the browser used for the gateway; the session cookie is SameSite=strict
        add_applications(
            {"/": page_for(self.rt)}, app=app, title="farside monitor", websocket_origin="*"
        )
        # the Bokeh server's own start-up: its loop that drops sessions nobody uses
        self._lifespan = app.router.lifespan_context(app)
        await self._lifespan.__aenter__()
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None and self._missing is None:
            async with self._lock:
                if self._app is None and self._missing is None:
                    await self._build()
        if self._app is None:
            if scope["type"] == "http":
                answer = PlainTextResponse(f"the monitor is not available: {self._missing}", 503)
                await answer(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def close(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.__aexit__(None, None, None)


def mount(app: FastAPI, monitor: LazyMonitor) -> None:
    """Serve the monitor on ``app`` (its login pages first: the mount takes the rest)."""
    app.include_router(login_router)
    app.include_router(oidc_router)
    app.mount(PATH, monitor)
