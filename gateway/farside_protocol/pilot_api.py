"""Request and response bodies of the pilots' side of the REST API (``/pilots``): register,
acquire, heartbeat, report, release, exit. Shared by the gateway and the pilot; the job
models both sides use are in :mod:`.models`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .models import (
    MAX_CORES,
    MAX_GPUS,
    Base64,
    JobKind,
    Memory,
    Name,
    ResourceName,
    Resources,
    _Strict,
)
from .states import ErrorClass


class PilotRegistration(_Strict):
    site: Name
    cores: int = Field(ge=1, le=MAX_CORES)
    memory: Memory
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    walltime: int | None = Field(None, ge=1, description="seconds left in the slot; None: none")
    hostname: str = Field(max_length=255)
    pid: int
    batch_id: str | None = Field(None, max_length=200)
    pilot_id: int | None = Field(None, description="set when the provisioner created the record")
    version: str = Field(max_length=50)


class PilotRegistered(_Strict):
    pilot_id: int
    token: str = Field(description="the pilot's own token; use it for every later call")
    heartbeat_interval: float
    lease_timeout: float
    max_poll: float = Field(description="longest wait the gateway honours on acquire/heartbeat")


class FreeShape(_Strict):
    """What of a pilot's slot is free now."""

    cores: int = Field(ge=0, le=MAX_CORES)
    memory: Memory
    gpus: int = Field(0, ge=0, le=MAX_GPUS)


class AcquireRequest(_Strict):
    """Ask for up to ``max_jobs`` jobs that fit one slot of the given shape.

    Each returned job fits ``cores``/``memory``/``gpus``/``walltime_left`` on its own; the
    pilot queues those it cannot start yet (prefetch). ``wait`` is the long-poll time.
    Jobs that never end on their own (Dask worker leases) are never fetched ahead: only as
    many as fit ``free`` are handed out.
    """

    max_jobs: int = Field(ge=1, le=10_000)
    cores: int = Field(ge=1, le=MAX_CORES)
    memory: Memory
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    walltime_left: int | None = Field(None, ge=0)
    idle_seconds: float = Field(0.0, ge=0)
    idle_timeout: float | None = Field(
        None, gt=0, description="the pilot's own idle timeout; None: the site's"
    )
    wait: float = Field(0.0, ge=0, le=300)
    free: FreeShape | None = Field(
        None, description="what is free on the slot now; None: the whole shape is"
    )


class Assignment(_Strict):
    job_id: int
    attempt: int
    kind: JobKind
    resources: Resources
    payload: Base64 | None = Field(None, description="inline payload; None: GET .../payload")
    payload_size: int
    inputs: list[int] = Field(
        default_factory=list,
        description="parent jobs whose outcomes the pilot fetches (GET .../inputs/{parent_id}) "
        "and hands to the worker before the job starts",
    )
    token: str | None = Field(
        None,
        description="workflow bodies only: a token acting for the owner within this run, valid "
        "while this attempt runs; the pilot hands it to the job's worker as FARSIDE_TOKEN",
    )


class AcquireResponse(_Strict):
    jobs: list[Assignment]
    retire: bool = Field(False, description="no work and not needed: the pilot should exit")


class JobUpdate(_Strict):
    """A pilot's news about one job it holds: started (``running``) or ended."""

    job_id: int
    attempt: int
    state: Literal["running", "finished", "failed"]
    time: float
    exit_code: int | None = None
    error_class: ErrorClass | None = None
    error: str | None = Field(None, max_length=10_000)
    resource: ResourceName | None = Field(
        None, description="with error_class 'resource': which resource ran out"
    )
    wall_time: float | None = Field(None, ge=0)
    cpu_time: float | None = Field(None, ge=0)
    gpu_memory: int | None = Field(
        None, ge=0, description="peak memory in use on the job's GPUs, bytes (nvidia-smi)"
    )
    gpu_utilization: float | None = Field(
        None, ge=0, le=100, description="mean utilisation of the job's GPUs, percent"
    )
    usage: list[tuple[float, int, float]] | None = Field(
        None,
        max_length=1000,
        description="the job's memory and CPU over time: (seconds since its start, RSS "
        "bytes, CPU seconds) every few seconds (the web monitor's plots)",
    )
    max_rss: int | None = Field(None, ge=0)
    result: Base64 | None = Field(None, description="inline result envelope")
    result_uploaded: bool = Field(False, description="result was PUT to .../result beforehand")


class LogEntry(_Strict):
    job_id: int
    attempt: int
    stream: Literal["stdout", "stderr", "system"]
    time: float
    text: str = Field(max_length=1_000_000)


class ReportRequest(_Strict):
    updates: list[JobUpdate] = Field(default_factory=list, max_length=10_000)
    logs: list[LogEntry] = Field(default_factory=list, max_length=100_000)


class ReportResponse(_Strict):
    applied: int


class HeartbeatRequest(_Strict):
    held: list[int] = Field(default_factory=list, description="job ids the pilot holds")
    walltime_left: int | None = None
    wait: float = Field(0.0, ge=0, le=300, description="hold the answer up to this long")


class HeartbeatResponse(_Strict):
    drop: list[int] = Field(
        default_factory=list, description="held jobs the pilot must kill/forget (cancelled, ...)"
    )
    retire: bool = False
    debug: list[int] = Field(
        default_factory=list,
        description="running jobs whose owners asked for a stack dump (into the job's log)",
    )


class ReleaseRequest(_Strict):
    """Jobs a pilot holds but has not started and gives back: they are queued again as
    they were, no attempt counted (another pilot may start them sooner)."""

    job_ids: list[int] = Field(min_length=1, max_length=10_000)
    reason: str = Field(max_length=2000)


class ReleaseResponse(_Strict):
    released: list[int] = Field(
        description="the jobs queued again; others had started, ended or were not held"
    )


class PilotExit(_Strict):
    reason: str = Field(max_length=2000)
