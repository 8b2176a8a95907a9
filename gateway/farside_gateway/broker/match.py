"""Hard matching: which sites can ever run a job, and the SQL that picks jobs for a slot.

A job that no configured site can ever run is refused at submission, with a message naming
the requirement that no site meets. Site *status* is not part of that check: a site that
is offline today may be back tomorrow, and its jobs wait for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, or_, select

from farside_protocol import InvalidRequest, format_memory, format_walltime
from farside_protocol.models import MAX_WALLTIME, JobSpec
from farside_protocol.pilot_api import AcquireRequest
from farside_protocol.states import JobState

from ..config import SiteConfig
from ..db.schema import jobs

#: The job columns a :class:`Need` is made of (``Need.of_row``).
NEED_COLUMNS = (
    jobs.c.cores,
    jobs.c.memory,
    jobs.c.walltime,
    jobs.c.gpus,
    jobs.c.gpu_model,
    jobs.c.arch,
    jobs.c.env,
    jobs.c.site_order,
)


@dataclass(frozen=True)
class Need:
    """What one job needs of a slot: from a spec at submission, or from a queued row."""

    cores: int
    memory: int
    walltime: int
    gpus: int
    gpu_model: str | None = None
    arch: str | None = None
    env: str | None = None
    sites: tuple[str, ...] = ()  # allowed sites in order of preference; () means any

    @classmethod
    def of_spec(cls, spec: JobSpec) -> Need:
        res = spec.resources
        return cls(
            res.cores,
            res.memory,
            res.walltime,
            res.gpus,
            res.gpu_model,
            res.arch,
            spec.env,
            tuple(dict.fromkeys(spec.sites)),
        )

    @classmethod
    def of_row(cls, row: Any) -> Need:
        """``row``: a jobs row (any object with the jobs table's columns as attributes)."""
        order = getattr(row, "site_order", None) or ""
        return cls(
            row.cores,
            row.memory,
            row.walltime,
            row.gpus,
            row.gpu_model,
            row.arch,
            row.env,
            tuple(s for s in order.split(",") if s),
        )


def unmet(site: SiteConfig, need: Need) -> str | None:
    """The first requirement ``site`` does not meet, said for a user; None if it fits."""
    if need.sites and site.name not in need.sites:
        return f"site {site.name} is not among the allowed sites"
    if need.cores > site.cores:
        return f"it needs {need.cores} cores; site {site.name} offers {site.cores}"
    if need.memory > site.memory:
        return (
            f"it needs {format_memory(need.memory)} of memory; site {site.name} offers "
            f"{format_memory(site.memory)}"
        )
    if need.gpus > site.gpus:
        return f"it needs {need.gpus} GPUs; site {site.name} offers {site.gpus}"
    if need.gpus and need.gpu_model and need.gpu_model != site.gpu_model:
        return f"it needs {need.gpu_model} GPUs; site {site.name} has {site.gpu_model or 'none'}"
    if need.arch and need.arch != site.arch:
        return f"it needs a {need.arch} CPU; site {site.name} is {site.arch}"
    if need.env and need.env not in site.environments:
        offered = ", ".join(site.environments) or "none"
        return f"it needs environment {need.env!r}; site {site.name} offers {offered}"
    if site.walltime is not None and need.walltime > site.walltime:
        return (
            f"it needs a walltime of {format_walltime(need.walltime)}; site {site.name} allows "
            f"{format_walltime(site.walltime)}"
        )
    return None


def fits(site: SiteConfig, need: Need) -> bool:
    return unmet(site, need) is None


def _why_none(sites: Sequence[SiteConfig], need: Need) -> str:
    """Name the requirement no site meets: the one that rules out the most promising site."""
    checks: list[tuple[str, bool, str]] = [
        ("cores", any(need.cores <= s.cores for s in sites), f"{need.cores} cores"),
        (
            "memory",
            any(need.memory <= s.memory for s in sites),
            f"{format_memory(need.memory)} of memory",
        ),
        ("gpus", any(need.gpus <= s.gpus for s in sites), f"{need.gpus} GPUs"),
        (
            "walltime",
            any(s.walltime is None or need.walltime <= s.walltime for s in sites),
            f"a walltime of {format_walltime(need.walltime)}",
        ),
    ]
    if need.gpus and need.gpu_model:
        checks.append(
            (
                "gpu_model",
                any(s.gpu_model == need.gpu_model for s in sites),
                f"{need.gpu_model} GPUs",
            )
        )
    if need.arch:
        checks.append(("arch", any(s.arch == need.arch for s in sites), f"a {need.arch} CPU"))
    if need.env:
        checks.append(
            ("env", any(need.env in s.environments for s in sites), f"environment {need.env!r}")
        )
    for field, anyone, wanted in checks:
        if not anyone:
            best = _best_offer(sites, field)
            return f"it needs {wanted}; {best}"
    reasons = "; ".join(filter(None, (unmet(s, need) for s in sites)))
    return f"no single site offers all of it together ({reasons})"


def _best_offer(sites: Sequence[SiteConfig], field: str) -> str:
    if field == "cores":
        s = max(sites, key=lambda s: s.cores)
        return f"the most any site offers is {s.cores} (site {s.name})"
    if field == "memory":
        s = max(sites, key=lambda s: s.memory)
        return f"the most any site offers is {format_memory(s.memory)} (site {s.name})"
    if field == "gpus":
        s = max(sites, key=lambda s: s.gpus)
        return f"the most any site offers is {s.gpus} (site {s.name})"
    if field == "walltime":
        longest = max(s.walltime or MAX_WALLTIME for s in sites)
        return f"the longest any site allows is {format_walltime(longest)}"
    if field == "gpu_model":
        models = sorted({s.gpu_model for s in sites if s.gpus and s.gpu_model})
        return f"GPU models offered: {', '.join(models) or 'none named'}"
    if field == "arch":
        return f"architectures offered: {', '.join(sorted({s.arch for s in sites}))}"
    offered = sorted({e for s in sites for e in s.environments})
    return f"environments offered: {', '.join(offered) or 'none'}"


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
        need = Need.of_spec(spec)
        if not any(fits(site, need) for site in allowed):
            raise InvalidRequest(
                f"job {index} can run on no site: {_why_none(allowed, need)}. Ask for less, "
                "or ask your operator for a site that offers it.",
                {"index": index},
            )


def queued_fitting(
    site: SiteConfig, cores: int, memory: int, gpus: int, walltime: int | None
) -> ColumnElement[bool]:
    """SQL: queued jobs that one slot of ``site`` with this much free can run.

    ``walltime`` is what the slot has left; None means no limit, 0 means none left.
    """
    return and_(
        jobs.c.state == JobState.QUEUED.value,
        jobs.c.cores <= cores,
        jobs.c.memory <= memory,
        jobs.c.gpus <= gpus,
        jobs.c.walltime <= (MAX_WALLTIME if walltime is None else walltime),
        or_(jobs.c.sites.is_(None), jobs.c.sites.like(f"%,{site.name},%")),
        *_labels(site),
    )


def _labels(site: SiteConfig) -> list[ColumnElement[bool]]:
    """GPU model, architecture and environment: a NULL on the job means 'any'."""
    conditions = [or_(jobs.c.arch.is_(None), jobs.c.arch == site.arch)]
    if site.gpu_model:
        conditions.append(or_(jobs.c.gpu_model.is_(None), jobs.c.gpu_model == site.gpu_model))
    else:
        conditions.append(jobs.c.gpu_model.is_(None))
    if site.environments:
        conditions.append(or_(jobs.c.env.is_(None), jobs.c.env.in_(site.environments)))
    else:
        conditions.append(jobs.c.env.is_(None))
    return conditions


def needs_longer_slot(conn: Connection, site: SiteConfig, request: AcquireRequest) -> bool:
    """Is there queued work this slot could run, were it not for its remaining walltime?"""
    fitting = queued_fitting(site, request.cores, request.memory, request.gpus, None)
    longer = jobs.c.walltime > (request.walltime_left or 0)
    return bool(conn.execute(select(exists().where(fitting, longer))).scalar())
