"""What the pool records when an attempt ends: shared by reports, retries and the reaper."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, update

from farside_protocol import JobState
from farside_protocol.pilot_api import JobUpdate
from farside_protocol.states import ACTIVE_STATES

from ..broker.match import NEED_COLUMNS
from ..config import SiteConfig
from ..db.schema import attempts, jobs

S = JobState
ACTIVE = [s.value for s in ACTIVE_STATES]

#: The columns a decision about a held job needs.
HELD_COLUMNS = (
    jobs.c.id,
    jobs.c.owner,
    jobs.c.state,
    jobs.c.attempt,
    jobs.c.pilot_id,
    jobs.c.max_attempts,
    jobs.c.user_failures,
    jobs.c.system_failures,
    jobs.c.resource_failures,
    *NEED_COLUMNS,  # a resource retry asks which sites could run it with more
    jobs.c.adjusted,
)


@dataclass(frozen=True)
class LeasePolicy:
    """The gateway's rules for ending attempts."""

    lease_timeout: float
    max_system_attempts: int
    max_resource_attempts: int = 3
    #: the configured sites: how much memory and walltime a retry may ask for
    sites: tuple[SiteConfig, ...] = field(default=())


@dataclass(frozen=True)
class PreparedUpdate:
    """A pilot's update with its result already placed (inline bytes or a blob key)."""

    update: JobUpdate
    result: bytes | None = None
    result_blob: str | None = None
    result_size: int | None = None


def outcome_params(prepared: PreparedUpdate) -> dict[str, Any]:
    upd = prepared.update
    return {
        "_id": upd.job_id,
        "_n": upd.attempt,
        "_t": upd.time,
        "_exit": upd.exit_code,
        "_wall": upd.wall_time,
        "_cpu": upd.cpu_time,
        "_rss": upd.max_rss,
        "_gpu_memory": upd.gpu_memory,
        "_gpu_utilization": upd.gpu_utilization,
        "_usage": json.dumps(upd.usage) if upd.usage else None,
        "_result": prepared.result,
        "_blob": prepared.result_blob,
        "_size": prepared.result_size,
        "_class": upd.error_class.value if upd.error_class else None,
        "_error": upd.error,
        "_start": None,
    }


def store_outcomes(
    conn: Connection, params: list[dict[str, Any]], final: JobState, now: float
) -> None:
    measured: dict[str, Any] = {
        "exit_code": bindparam("_exit"),
        "wall_time": bindparam("_wall"),
        "cpu_time": bindparam("_cpu"),
        "max_rss": bindparam("_rss"),
        "error_class": bindparam("_class"),
        "error": bindparam("_error"),
    }
    started = {"started_at": func.coalesce(jobs.c.started_at, bindparam("_start"))}
    conn.execute(
        update(jobs)
        .where(jobs.c.id == bindparam("_id"))
        .values(
            state=final.value,
            ended_at=now,
            lease_expires=None,
            result=bindparam("_result"),
            result_blob=bindparam("_blob"),
            result_size=bindparam("_size"),
            **started,
            **measured,
        ),
        params,
    )
    conn.execute(
        update(attempts)
        .where(and_(attempts.c.job_id == bindparam("_id"), attempts.c.number == bindparam("_n")))
        .values(
            state=final.value,
            ended_at=now,
            started_at=func.coalesce(attempts.c.started_at, bindparam("_start")),
            max_gpu_memory=bindparam("_gpu_memory"),
            gpu_utilization=bindparam("_gpu_utilization"),
            usage=bindparam("_usage"),
            **measured,
        ),
        params,
    )
