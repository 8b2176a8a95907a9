"""What the pool records when an attempt ends: shared by reports, retries and the reaper."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, update

from farside_protocol import ErrorClass, JobState
from farside_protocol.pilot_api import JobUpdate
from farside_protocol.states import ACTIVE_STATES

from ..broker.match import NEED_COLUMNS
from ..config import SiteConfig
from ..db.schema import attempts, jobs
from .transaction import JobRef, PoolTransaction

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


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: what the pilot measured and returned, and the error if any."""

    exit_code: int | None = None
    wall_time: float | None = None
    cpu_time: float | None = None
    max_rss: int | None = None
    gpu_memory: int | None = None
    gpu_utilization: float | None = None
    #: (seconds since the start, RSS bytes, CPU seconds) every few seconds
    usage: list[tuple[float, int, float]] | None = None
    result: bytes | None = None
    result_blob: str | None = None
    result_size: int | None = None
    error_class: ErrorClass | None = None
    error: str | None = None

    @classmethod
    def reported(cls, prepared: PreparedUpdate) -> Outcome:
        upd = prepared.update
        return cls(
            exit_code=upd.exit_code,
            wall_time=upd.wall_time,
            cpu_time=upd.cpu_time,
            max_rss=upd.max_rss,
            gpu_memory=upd.gpu_memory,
            gpu_utilization=upd.gpu_utilization,
            usage=upd.usage or None,
            result=prepared.result,
            result_blob=prepared.result_blob,
            result_size=prepared.result_size,
            error_class=upd.error_class,
            error=upd.error,
        )

    def measured(self) -> dict[str, Any]:
        """The columns jobs and attempts share."""
        return {
            "exit_code": self.exit_code,
            "wall_time": self.wall_time,
            "cpu_time": self.cpu_time,
            "max_rss": self.max_rss,
            "error_class": self.error_class.value if self.error_class else None,
            "error": self.error,
        }

    def attempt_columns(self) -> dict[str, Any]:
        return {
            **self.measured(),
            "max_gpu_memory": self.gpu_memory,
            "gpu_utilization": self.gpu_utilization,
            "usage": json.dumps(self.usage) if self.usage else None,
        }

    def job_columns(self) -> dict[str, Any]:
        return {
            **self.measured(),
            "result": self.result,
            "result_blob": self.result_blob,
            "result_size": self.result_size,
        }


@dataclass(frozen=True)
class Ending:
    """A held job's current attempt ending with ``outcome``."""

    job: JobRef
    outcome: Outcome
    #: when the attempt started, if that is learnt only now (it started and ended between
    #: two reports: most short jobs), so that the job is written once, not twice
    started_at: float | None = None
    #: more of the job's columns to set with it (its failure counters)
    columns: Mapping[str, Any] = field(default_factory=dict)


def store_outcomes(tx: PoolTransaction, endings: Sequence[Ending], final: JobState) -> None:
    """End the jobs' current attempts in state ``final``, each with its outcome; each job
    moves to ``final`` with its outcome's error in its history."""
    if not endings:
        return
    # one statement per kind of ending: the jobs of one have the same columns and history
    kinds: dict[tuple[ErrorClass | None, str | None, bool], list[Ending]] = {}
    for ending in endings:
        kind = ending.outcome.error_class, ending.outcome.error, ending.started_at is not None
        kinds.setdefault(kind, []).append(ending)
    for (error_class, error, started), same in kinds.items():
        tx.move(
            [e.job for e in same],
            final,
            error_class=error_class,
            reason=error,
            values={"ended_at": tx.now, "lease_expires": None},
            each=[
                {
                    **e.outcome.job_columns(),
                    **({"started_at": e.started_at} if started else {}),
                    **e.columns,
                }
                for e in same
            ],
        )
    attempt_rows = [(e, e.outcome.attempt_columns()) for e in endings]
    tx.conn.execute(
        update(attempts)
        .where(and_(attempts.c.job_id == bindparam("_id"), attempts.c.number == bindparam("_n")))
        .values(
            state=final.value,
            ended_at=tx.now,
            started_at=func.coalesce(attempts.c.started_at, bindparam("_start")),
            **{column: bindparam(f"_{column}") for column in attempt_rows[0][1]},
        ),
        [
            {
                "_id": e.job.id,
                "_n": e.job.attempt,
                "_start": e.started_at,
                **{f"_{column}": value for column, value in columns.items()},
            }
            for e, columns in attempt_rows
        ],
    )
