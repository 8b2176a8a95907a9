"""A cluster's logs in one answer (``GET /clusters/{name}/logs``): the last lines of each
worker, prefixed with it, wherever the lines are kept.

A pilot cluster's workers are jobs, whose lines the pilots stream into the pool; the Dask
operator's are pods, whose output Kubernetes keeps (``pods/log``), the scheduler's too.
"""

from __future__ import annotations

from typing import Any

from farside_protocol.clusters import ClusterInfo

from ..db import Database
from ..pool import queries
from ..sites import kubernetes_dask
from .operator import OperatorClusters


async def cluster_log_lines(
    db: Database, operator: OperatorClusters, row: Any, info: ClusterInfo, tail: int
) -> list[str]:
    """``row``: the cluster's row; ``info``: its view with worker leases."""
    if row.operator_site:
        return await kubernetes_dask.pod_logs(operator.site_of(row), info.name, tail)
    lines: list[str] = []
    for worker in sorted(info.workers, key=lambda w: w.job_id):
        texts = await db.read(queries.log_tail, worker.job_id, tail)
        lines.extend(f"[{worker.name}] {text}" for text in texts)
    return lines
