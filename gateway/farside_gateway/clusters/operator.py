"""Clusters that dask-kubernetes' operator runs (a Kubernetes site with ``dask_operator``).

The manager keeps their rows like any cluster's; this module does what differs: the
scheduler and workers are pods the operator makes from a ``DaskCluster`` resource
(:mod:`farside_gateway.sites.kubernetes_dask`), so creating, scaling and closing the
cluster is writing that resource, and watching it is reading its phase. A cluster is asked
of the operator when its default group names exactly one site, a Kubernetes site with
``dask_operator``; it has that one worker group, and no gateway-side adaptivity (the
operator's ``DaskAutoscaler`` would be the way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from farside_protocol import InvalidRequest, ServiceUnavailable
from farside_protocol.clusters import DEFAULT_GROUP, WorkerGroupSpec

from ..sites import kubernetes_dask as dask_crd
from ..sites.base import Site
from ..sites.kubernetes import KubernetesSite

log = logging.getLogger(__name__)

#: longest the operator may take from the resource to a scheduler that listens
START_TIMEOUT = 180.0
POLL = 1.0


class OperatorClusters:
    def __init__(self, sites: Mapping[str, Site]) -> None:
        self.sites = sites

    def site_for(self, groups: dict[str, WorkerGroupSpec]) -> KubernetesSite | None:
        """The operator site these groups ask for, if they ask for one."""
        default = groups[DEFAULT_GROUP]
        if len(default.sites) != 1:
            return None
        site = self.sites.get(default.sites[0])
        if not isinstance(site, KubernetesSite) or not site.options.dask_operator:
            return None
        if len(groups) > 1:
            raise InvalidRequest(
                f"site {site.name!r} runs clusters through the Dask operator, with one worker "
                "group: ask for no other groups"
            )
        return site

    def site_of(self, row: Any) -> KubernetesSite:
        site = self.sites.get(row.operator_site)
        if not isinstance(site, KubernetesSite):
            raise ServiceUnavailable(
                f"cluster {row.name} runs on site {row.operator_site!r}, which this gateway "
                "no longer configures as a Kubernetes site"
            )
        return site

    async def create(
        self,
        site: KubernetesSite,
        name: str,
        owner: str,
        spec: WorkerGroupSpec,
        idle_timeout: float,
    ) -> None:
        """Create the cluster's ``DaskCluster`` resource."""
        manifest = dask_crd.cluster_manifest(site, name, owner, spec, idle_timeout)
        try:
            await dask_crd.create(site, manifest)
        except Exception as exc:
            raise ServiceUnavailable(
                f"site {site.name!r}: could not create the DaskCluster resource ({exc}); is "
                "dask-kubernetes' operator installed (its CRDs) in the cluster?"
            ) from exc

    async def wait_running(self, site: KubernetesSite, name: str) -> str:
        """Wait until the operator runs the cluster and its scheduler listens; returns the
        scheduler's address. Deletes the resource and raises if that takes too long."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        phase: str | None = None
        while loop.time() < deadline:
            phase = await dask_crd.phase(site, name)
            if phase is None:
                raise ServiceUnavailable(f"the DaskCluster of cluster {name} was deleted")
            # the scheduler's Deployment being ready is the test, not the phase: the
            # operator can leave a running cluster "Pending" when its own two handlers race
            # (dask/dask-kubernetes#968, fixed after 2026.3.0)
            if await dask_crd.scheduler_ready(site, name):
                return dask_crd.scheduler_address(site, name)
            await asyncio.sleep(POLL)
        await dask_crd.delete(site, name)
        raise ServiceUnavailable(
            f"the Dask operator did not run cluster {name} within {START_TIMEOUT:g}s (phase "
            f"{phase}); is the operator running, and can the site's image run `dask`?"
        )

    async def scale(self, row: Any, workers: int) -> None:
        await dask_crd.scale(self.site_of(row), row.name, workers)

    async def stop(self, row: Any) -> None:
        await dask_crd.delete(self.site_of(row), row.name)

    async def gone(self, row: Any) -> bool:
        """Whether the cluster's resource is gone (deleted, or the operator's idle stop)."""
        try:
            return await dask_crd.phase(self.site_of(row), row.name) is None
        except Exception as exc:  # the API is down: nothing is known, nothing ends
            log.warning("cluster %s: cannot read its DaskCluster: %s", row.name, exc)
            return False
