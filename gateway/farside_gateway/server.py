"""Serve the gateway with uvicorn: bind (port 0 works), announce the URL, stop in order.

Stopping order on SIGINT/SIGTERM: pilots this process started are stopped first (while the
API still answers, so they report what they ran and say goodbye), then long-polls and
streams are woken so they end, then uvicorn closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator, Sequence

import uvicorn
from sqlalchemy import Connection

from farside_protocol import ConfigurationError

from .app import create_app
from .config import GatewayConfig
from .runtime import Runtime

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server with our own shutdown sequence on signals."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, stop_pilots: bool) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.stop_pilots = stop_pilots
        self._stopping: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def request_stop(self) -> None:
        if self._stopping is not None:  # second Ctrl-C: stop now
            self.force_exit = True
            self.should_exit = True
            return
        self._stopping = asyncio.get_running_loop().create_task(self._graceful())

    async def _graceful(self) -> None:
        if self.stop_pilots:
            log.warning("stopping pilots ...")
            await self.runtime.stop_pilots()
        self.runtime.stopping.set()
        self.runtime.notifier.wake_everyone()
        self.should_exit = True


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: only then does asyncio set TCP_NODELAY on accepted connections;
    # without it Nagle + delayed ACKs add ~40 ms to every small response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror}. Is another farside gateway "
            "running there? Stop it, or pick another port with --port (0 picks a free one)."
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}"


def serve(
    config: GatewayConfig,
    *,
    stop_pilots_on_exit: bool = True,
    on_ready: Callable[[Runtime], None] | None = None,
    bootstrap: Sequence[Callable[[Connection], None]] = (),
    log_level: str = "warning",
) -> int:
    """Run the gateway in the foreground until SIGINT/SIGTERM; return the exit status."""
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    public_url = config.public_url or url_for(config.host, port)
    runtime = Runtime(config, public_url, bootstrap=bootstrap)
    uv_config = uvicorn.Config(
        create_app(runtime),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,
        # long-polls and SSE streams are many but idle
        limit_concurrency=None,
        backlog=2048,
    )
    server = _Server(uv_config, runtime, stop_pilots_on_exit)

    async def main() -> None:
        await runtime.start_sites()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                await serving  # start-up failed: raise its error
                return
            await asyncio.sleep(0.02)
        announce(config, public_url)
        if on_ready is not None:
            on_ready(runtime)
        await serving

    asyncio.run(main())
    return runtime.exit_status


def announce(config: GatewayConfig, url: str) -> None:
    """Write ``state_dir/gateway.json`` so scripts and tests find a port-0 gateway."""
    path = config.state_dir / "gateway.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)
