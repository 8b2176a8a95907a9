"""The program of one cluster's scheduler process: ``python -m farside_gateway.clusters.scheduler``.

It imports distributed first and then waits for its settings as one JSON line on stdin, so
the gateway can keep a *spare* started ahead of demand (importing distributed and bokeh is
most of a scheduler's start-up). Settings: ``name``, ``tls_cert``, ``tls_key`` (PEM),
``listen_host``, ``contact_host``, ``dashboard``, ``idle_timeout``. Once listening it writes
``{"address": ..., "dashboard_port": ...}`` as one line on stdout.

It ends when the scheduler closes (idle past ``idle_timeout``, or told to) or when its stdin
closes: the gateway that started it is gone, and a scheduler nobody manages must not stay.
With ``orphan_grace`` (replicas on one PostgreSQL) it waits that long first: another
replica that adopts the cluster calls the scheduler's ``farside_keepalive`` handler on each
of its passes, and the scheduler stays as long as those calls come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from typing import Any

import distributed
from distributed import Scheduler
from distributed.security import Security

log = logging.getLogger("farside.scheduler")

# the dashboard's modules, imported before the settings come (see above); without bokeh,
# clusters run without dashboards
with contextlib.suppress(ImportError):
    import distributed.dashboard.scheduler


def _watch_stdin(loop: asyncio.AbstractEventLoop, closed: asyncio.Event) -> None:
    # a daemon thread: a blocked read must not keep the process alive at exit
    def read() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=read, name="stdin-watch", daemon=True).start()


async def serve(settings: dict[str, Any]) -> None:
    security = Security(
        tls_ca_file=settings["tls_cert"],
        tls_scheduler_cert=settings["tls_cert"],
        tls_scheduler_key=settings["tls_key"],
        require_encryption=True,
    )
    listen = settings["listen_host"]
    contact = settings.get("contact_host") or listen
    dashboard = bool(settings.get("dashboard"))
    scheduler = Scheduler(
        host=listen,
        port=0,
        protocol="tls",
        security=security,
        contact_address=None,
        dashboard=dashboard,
        # the gateway proxies it at this path (with the owner's auth), so links inside the
        # dashboard's pages must carry it
        dashboard_address=f"{settings.get('dashboard_host') or listen}:0" if dashboard else None,
        http_prefix=settings.get("dashboard_prefix") or "/",
        idle_timeout=settings.get("idle_timeout"),
        validate=False,
    )
    await scheduler
    port = scheduler.address.rsplit(":", 1)[1]
    address = f"tls://{contact}:{port}"
    service = scheduler.services.get("dashboard")
    ready = {"address": address, "dashboard_port": service.port if service else None}
    print(json.dumps(ready), flush=True)
    log.info("cluster %s: scheduler at %s", settings.get("name"), address)
    kept = Keepalive()
    scheduler.handlers["farside_keepalive"] = kept.beat
    closed = asyncio.Event()
    _watch_stdin(asyncio.get_running_loop(), closed)
    watch = asyncio.create_task(_orphaned(closed, kept, float(settings.get("orphan_grace") or 0)))
    finished = asyncio.create_task(scheduler.finished())
    done, _ = await asyncio.wait({watch, finished}, return_when=asyncio.FIRST_COMPLETED)
    if watch in done:
        log.info("the gateway is gone and no other replica adopted it: closing the scheduler")
    await scheduler.close()
    for task in (watch, finished):
        task.cancel()


class Keepalive:
    """When a gateway replica last said it manages this scheduler."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self, comm: Any = None) -> str:  # a distributed handler: comm comes first
        self.last = time.monotonic()
        return "ok"


async def _orphaned(closed: asyncio.Event, kept: Keepalive, grace: float) -> None:
    """Return once the starting gateway is gone (stdin closed) and no replica has kept the
    scheduler alive for ``grace`` seconds."""
    await closed.wait()
    if grace <= 0:
        return
    log.info("the gateway that started it is gone: waiting %gs for another to adopt it", grace)
    kept.last = max(kept.last, time.monotonic())
    while True:  # each keepalive moves the end further away
        left = grace - (time.monotonic() - kept.last)
        if left <= 0:
            return
        await asyncio.sleep(left)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    line = sys.stdin.readline()
    if not line.strip():
        return  # a spare the gateway did not need
    settings = json.loads(line)
    version = getattr(distributed, "__version__", "?")
    log.info("distributed %s; starting cluster %s", version, settings["name"])
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
