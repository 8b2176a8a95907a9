"""Hard matching at submission: a job no configured site can ever run is refused at once,
with a message naming the requirement that no site meets."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, or_

from farside_pilot.protocol import InvalidRequest, format_memory, format_walltime
from farside_pilot.protocol.models import MAX_WALLTIME, JobSpec, JobState

from ..config import SiteConfig
from ..db.schema import jobs


def _fits(site: SiteConfig, spec: JobSpec) -> bool:
    res = spec.resources
    return (
        res.cores <= site.cores
        and res.memory <= site.memory
        and res.gpus <= site.gpus
        and (site.walltime is None or res.walltime <= site.walltime)
    )


def _unmet(sites: list[SiteConfig], spec: JobSpec) -> str:
    res = spec.resources
    best_cores = max(sites, key=lambda s: s.cores)
    best_memory = max(sites, key=lambda s: s.memory)
    best_gpus = max(sites, key=lambda s: s.gpus)
    if res.cores > best_cores.cores:
        return (
            f"it needs {res.cores} cores; the most any site offers is {best_cores.cores} "
            f"(site {best_cores.name})"
        )
    if res.memory > best_memory.memory:
        return (
            f"it needs {format_memory(res.memory)} of memory; the most any site offers is "
            f"{format_memory(best_memory.memory)} (site {best_memory.name})"
        )
    if res.gpus > best_gpus.gpus:
        return (
            f"it needs {res.gpus} GPUs; the most any site offers is {best_gpus.gpus} "
            f"(site {best_gpus.name})"
        )
    limits = [s.walltime for s in sites if s.walltime is not None]
    if len(limits) == len(sites) and res.walltime > max(limits):
        return (
            f"it needs a walltime of {format_walltime(res.walltime)}; the longest any site "
            f"allows is {format_walltime(max(limits))}"
        )
    return "no single site offers all of its cores, memory, GPUs and walltime together"


def check_runnable(sites: list[SiteConfig], specs: list[JobSpec]) -> None:
    """Raise InvalidRequest for the first job that no allowed site could ever run."""
    by_name = {s.name: s for s in sites}
    for index, spec in enumerate(specs):
        unknown = sorted(set(spec.sites) - by_name.keys())
        if unknown:
            raise InvalidRequest(
                f"job {index}: unknown site(s) {unknown}; configured sites: {sorted(by_name)}",
                {"index": index},
            )
        allowed = [by_name[n] for n in spec.sites] if spec.sites else sites
        if not any(_fits(site, spec) for site in allowed):
            raise InvalidRequest(
                f"job {index} can run on no site: {_unmet(allowed, spec)}. Ask for less, or "
                "ask your operator for a site that offers it.",
                {"index": index},
            )


def queued_fitting(
    site: str, cores: int, memory: int, gpus: int, walltime: int | None
) -> ColumnElement[bool]:
    """SQL: queued jobs that one slot of this shape on ``site`` can run.

    ``walltime`` is what the slot has left; None means no limit, 0 means none left.
    """
    return and_(
        jobs.c.state == JobState.QUEUED.value,
        jobs.c.cores <= cores,
        jobs.c.memory <= memory,
        jobs.c.gpus <= gpus,
        jobs.c.walltime <= (MAX_WALLTIME if walltime is None else walltime),
        or_(jobs.c.sites.is_(None), jobs.c.sites.like(f"%,{site},%")),
    )
