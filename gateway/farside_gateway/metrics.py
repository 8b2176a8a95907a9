"""Prometheus metrics of one gateway process, served at ``/metrics``.

Counters and histograms are kept as things happen (requests, submissions, acquires,
heartbeats, database transactions); the pool's state (jobs by state and site, pilots by
site and state) is read from the database when Prometheus scrapes, so every replica
reports the same, whole pool. Names follow Prometheus' conventions: a ``farside_`` prefix,
base units (seconds), ``_total`` on counters (added by the client library).

Why prometheus-client: it is the reference implementation of the exposition format, with
the histogram and label bookkeeping a scrape needs; JupyterHub's and Dask's own metrics
use it too, so an operator's Prometheus reads all three alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db.schema import jobs, pilots

#: the request paths whose answers are streams: their latency is the time to the headers
STREAMING_SUFFIXES = ("/events", "/logs/stream")


class Metrics:
    """The metrics of one gateway process (a registry of its own, so tests may run several
    apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram(
            "farside_http_request_duration_seconds",
            "Time to the response headers, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.submitted = Counter("farside_jobs_submitted", "Jobs submitted.", registry=r)
        self.acquires = Histogram(
            "farside_pilot_acquire_duration_seconds",
            "Pilots' acquire calls (long polls, so mostly waiting), by site and whether they "
            "got jobs.",
            ["site", "outcome"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.handed_out = Counter(
            "farside_jobs_assigned", "Jobs handed to pilots, by site.", ["site"], registry=r
        )
        self.heartbeats = Counter("farside_pilot_heartbeats", "Pilot heartbeats.", registry=r)
        self.streams = Gauge(
            "farside_event_streams",
            "Open server-sent event streams, by kind.",
            ["stream"],
            registry=r,
        )
        self.db_time = Histogram(
            "farside_db_transaction_duration_seconds",
            "Database transactions, by kind (read or write).",
            ["kind"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        )

    def watch_pool(self, run: Callable[[Callable[[Connection], Any]], Any]) -> None:
        """Report the pool's jobs and pilots, read through ``run(fn)`` at each scrape."""
        self.registry.register(_PoolCollector(run))

    def observe_db(self, kind: str, seconds: float) -> None:
        self.db_time.labels(kind).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self, run: Callable[[Callable[[Connection], Any]], Any]) -> None:
        self.run = run

    def describe(self) -> list[Any]:
        return []  # collected only when scraped: no database query at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        job_counts, pilot_counts = self.run(_pool_counts)
        by_job = GaugeMetricFamily(
            "farside_jobs",
            "Jobs in the pool, by state and site (none: not placed yet).",
            labels=["state", "site"],
        )
        for state, site, count in job_counts:
            by_job.add_metric([state, site or "none"], count)
        yield by_job
        by_pilot = GaugeMetricFamily(
            "farside_pilots", "Pilots, by site and state.", labels=["site", "state"]
        )
        for site, state, count in pilot_counts:
            by_pilot.add_metric([site, state], count)
        yield by_pilot


def _pool_counts(conn: Connection) -> tuple[list[Any], list[Any]]:
    job_counts = conn.execute(
        select(jobs.c.state, jobs.c.site, func.count()).group_by(jobs.c.state, jobs.c.site)
    ).all()
    pilot_counts = conn.execute(
        select(pilots.c.site, pilots.c.state, func.count()).group_by(pilots.c.site, pilots.c.state)
    ).all()
    return list(job_counts), list(pilot_counts)


class RequestTimer:
    """ASGI middleware: each HTTP request's time to its response headers, by route
    template (``/api/v1/jobs/{job_id}``, not the id: labels stay few)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        streaming = path.endswith(STREAMING_SUFFIXES)
        if streaming:
            self.metrics.streams.labels(_stream_kind(path)).inc()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = route_template(scope)
                self.metrics.requests.labels(
                    scope.get("method", ""), route, str(message["status"])
                ).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if streaming:
                self.metrics.streams.labels(_stream_kind(path)).dec()


def route_template(scope: Scope) -> str:
    """The matched route's path template, whole: routers included under a prefix keep only
    their own part in the route (``/jobs/{job_id}`` for ``/api/v1/jobs/7``), so the prefix
    comes from the request's path; ``unmatched`` when no route matched."""
    template = getattr(scope.get("route"), "path", None)
    if template is None:
        return "unmatched"
    if ":path}" in template:  # a catch-all: its routes are mounted at the root
        return str(template)
    segments = str(scope.get("path", "")).rstrip("/").split("/")
    own = template.rstrip("/").count("/")
    return "/".join(segments[: len(segments) - own]) + str(template)


def _stream_kind(path: str) -> str:
    return "events" if path.endswith("/events") else "logs"
