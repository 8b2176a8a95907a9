"""``GET /api/v1/metrics``: the gateway's Prometheus metrics (:mod:`farside_gateway.metrics`).

For admins only, like the rest of the API behind a token (job counts by site are the whole
facility's business): Prometheus' scrape config names the path and an admin token, e.g.
``metrics_path: /api/v1/metrics`` and ``authorization: {credentials_file: ...}``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .deps import AdminDep, RuntimeDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(_: AdminDep, rt: RuntimeDep) -> Response:
    """Metrics in Prometheus' text format (admin token)."""
    # the pool's counts are read from the database while the text is made: off the loop
    body = await asyncio.to_thread(rt.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
