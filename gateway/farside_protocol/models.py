"""Request and response bodies of the gateway's REST API.

The client, the gateway and the pilot all import these models, so the wire format is written
once. Every model forbids unknown fields: a misspelt field is an error, not silently lost.
Resources travel as integers (bytes, seconds) but are accepted as strings ("2 GiB", "10m").
Binary payloads travel base64-encoded inside JSON, or as raw bodies on the ``/result`` and
``/payload`` endpoints when they are large (and on ``/inputs``, where a pilot fetches the
results of a job's parents).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from .states import ErrorClass, JobState, SiteStatus
from .units import parse_memory, parse_walltime

API_PREFIX = "/api/v1"
#: how farside's own tokens start, by kind (OIDC and hub tokens never do)
TOKEN_PREFIXES = {"user": "fsu_", "site": "fss_", "pilot": "fsp_"}

MAX_CORES = 4096
MAX_MEMORY = 64 * 1024**4
MAX_WALLTIME = 30 * 86400
MAX_GPUS = 64
MAX_JOBS_PER_SUBMIT = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _b64decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ValueError("not valid base64") from exc
    return value


Base64 = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
]
# what a sender may write: bytes or seconds, or text that parse_memory/parse_walltime read
_MEMORY_IN = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_MEMORY},
        {"type": "string", "description": "e.g. '4 GiB', '512 MB'"},
    ]
}
_WALLTIME_IN = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_WALLTIME},
        {"type": "string", "description": "e.g. '2h', '1 day', '01:30:00'"},
    ]
}
Memory = Annotated[
    int,
    BeforeValidator(parse_memory),
    Field(ge=0, le=MAX_MEMORY),
    WithJsonSchema(_MEMORY_IN, mode="validation"),
]
Walltime = Annotated[
    int,
    BeforeValidator(parse_walltime),
    Field(ge=1, le=MAX_WALLTIME),
    WithJsonSchema(_WALLTIME_IN, mode="validation"),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Resources(_Strict):
    """What one job needs from a slot."""

    cores: int = Field(1, ge=1, le=MAX_CORES)
    memory: Memory = Field(1024**3, description="bytes; strings such as '2 GiB' are accepted")
    walltime: Walltime = Field(3600, description="seconds; strings such as '10m' are accepted")
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    gpu_model: str | None = Field(
        None, max_length=64, description="GPU model the job needs, e.g. 'A100'; None: any"
    )
    arch: str | None = Field(
        None, max_length=32, description="CPU architecture, e.g. 'x86_64' or 'aarch64'; None: any"
    )


ResourceName = Literal["memory", "walltime"]
#: ``function``: a pickled call; ``dask-worker``: a lease to run a Dask worker for a cluster
#: (the gateway makes these, see ``protocol.clusters``); ``workflow``: the body of a workflow
#: run, a pickled call that gets a token to submit the run's child jobs (``protocol.workflows``).
#: Users submit functions; the gateway makes the other two.
JobKind = Literal["function", "dask-worker", "workflow"]
#: the kind whose jobs run until their cluster lets them go: never fetched ahead by a pilot
DASK_WORKER: JobKind = "dask-worker"

#: a workflow call's journal key: ``<place>:<digest>`` (see ``farside._journal``)
JournalKey = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9:._-]+$")]

# ---------------------------------------------------------------- user side


class JobSpec(_Strict):
    """One job to submit; ``payload`` is the pickled call (``farside_protocol.payload``)."""

    kind: JobKind = Field(
        "function", description="users submit functions; the gateway makes dask-worker leases"
    )
    payload: Base64
    name: Name | None = None
    group: Name | None = Field(None, description="jobs of one map share a group")
    resources: Resources = Field(default_factory=Resources)
    max_attempts: int = Field(1, ge=1, le=100, description="attempts a user error may use")
    priority: int = Field(0, ge=-1000, le=1000)
    after: list[int] = Field(default_factory=list, max_length=MAX_JOBS_PER_SUBMIT)
    sites: list[Name] = Field(
        default_factory=list,
        description="allowed sites in order of preference; empty means any",
    )
    env: Name | None = Field(
        None, description="environment (image, software profile) the job needs; None: any site's"
    )
    inputs: list[int] = Field(
        default_factory=list,
        max_length=MAX_JOBS_PER_SUBMIT,
        description="parent jobs (a subset of `after`) whose results the job receives: the "
        "worker puts each parent's value where the payload holds an InputRef to it",
    )
    journal_key: JournalKey | None = Field(
        None,
        description="a workflow body's name for this call (its place in the body and a digest "
        "of the call); a second submission with the same key returns the first job. Only a "
        "workflow's token may set it",
    )

    @model_validator(mode="after")
    def _inputs_are_parents(self) -> JobSpec:
        strangers = sorted(set(self.inputs) - set(self.after))
        if strangers:
            raise ValueError(
                f"inputs {strangers[:20]} are not in after: a job can only take the results "
                "of jobs it waits for; add them to after as well"
            )
        return self


class SubmitRequest(_Strict):
    jobs: list[JobSpec] = Field(min_length=1, max_length=MAX_JOBS_PER_SUBMIT)


class SubmitResponse(_Strict):
    job_ids: list[int]
    journalled: list[int] = Field(
        default_factory=list,
        description="ids among job_ids that a workflow run made before under the same "
        "journal keys (they may have ended already)",
    )


class JobInfo(_Strict):
    id: int
    kind: JobKind = Field(
        "function", description="dask-worker: a Dask cluster's worker lease (group = cluster)"
    )
    name: str | None
    group: str | None
    owner: str
    state: JobState
    site: str | None
    pilot_id: int | None
    attempts: int
    resources: Resources
    env: str | None = None
    adjusted: str | None = Field(
        None, description="how the gateway changed the resources asked for (scouts, retries)"
    )
    priority: int
    created: datetime
    queued: datetime | None
    started: datetime | None
    ended: datetime | None
    exit_code: int | None
    error_class: ErrorClass | None
    error: str | None
    wall_time: float | None
    cpu_time: float | None
    max_rss: int | None


class StateChange(_Strict):
    state: JobState
    time: datetime
    attempt: int
    reason: str | None


class AttemptInfo(_Strict):
    number: int
    pilot_id: int | None
    site: str | None
    batch_id: str | None
    state: JobState
    started: datetime | None
    ended: datetime | None
    error_class: ErrorClass | None
    error: str | None
    exit_code: int | None
    wall_time: float | None
    cpu_time: float | None
    max_rss: int | None
    gpu_memory: int | None = Field(None, description="peak memory in use on its GPUs, bytes")
    gpu_utilization: float | None = Field(None, description="mean utilisation of its GPUs, %")


class JobDetail(JobInfo):
    after: list[int]
    inputs: list[int] = Field(
        default_factory=list, description="parents whose results the job takes as arguments"
    )
    history: list[StateChange]
    attempt_list: list[AttemptInfo]


class JobList(_Strict):
    jobs: list[JobInfo]


class CancelRequest(_Strict):
    job_ids: list[int] = Field(default_factory=list, max_length=MAX_JOBS_PER_SUBMIT)
    group: Name | None = None


class CancelResponse(_Strict):
    cancelled: list[int]


class RetryRequest(_Strict):
    """Run a job's call again as a new job, with these options changed (None: as before)."""

    cores: int | None = Field(None, ge=1, le=MAX_CORES)
    memory: Memory | None = None
    walltime: Walltime | None = None
    gpus: int | None = Field(None, ge=0, le=MAX_GPUS)
    sites: list[Name] | None = Field(None, description="allowed sites; [] any")


class RetryResponse(_Strict):
    job_id: int = Field(description="the new job")
    stopped: bool = Field(description="the old job had not ended and was cancelled")


class JobEvent(_Strict):
    """One state change, as streamed on ``GET /events`` (server-sent events).

    ``result`` carries the pickled result envelope of a finished or failed job inline when
    it is small; otherwise ``result_size`` is set and the client fetches ``/jobs/{id}/result``.
    """

    seq: int
    job_id: int
    state: JobState
    time: float
    attempt: int
    error_class: ErrorClass | None = None
    reason: str | None = None
    result: Base64 | None = None
    result_size: int | None = None


class EventBatch(_Strict):
    events: list[JobEvent]


class LogLine(_Strict):
    seq: int
    job_id: int
    attempt: int
    stream: Literal["stdout", "stderr", "system"]
    time: float
    text: str


class LogPage(_Strict):
    lines: list[LogLine]
    next_seq: int
    ended: bool = Field(description="the job is in a final state and no more lines will come")


class WhoAmI(_Strict):
    name: str
    kind: Literal["user", "admin", "site", "pilot"]
    pilot_id: int | None = None
    groups: list[str] = Field(default_factory=list, description="fair-share groups")
    workflow_id: int | None = Field(
        None, description="a workflow body's token: the run it acts within"
    )


class SiteInfo(_Strict):
    name: str
    kind: str
    status: SiteStatus
    status_reason: str | None = None
    healthy: bool = Field(True, description="False after repeated failed pilot submissions")
    last_error: str | None = Field(None, description="the batch system's last refusal")
    slot: Resources
    environments: list[str] = Field(default_factory=list)
    pilots: dict[str, int]
    min_warm: int
    max_pilots: int
    max_queued: int


class SiteStatusChange(_Strict):
    """An admin sets a site's status: ``draining`` takes no new work and lets held jobs
    finish; ``offline`` also stops its pilots, whose jobs are retried on other sites."""

    status: SiteStatus
    reason: str | None = Field(None, max_length=500)


class PilotInfo(_Strict):
    id: int
    site: str
    state: str
    hostname: str | None
    batch_id: str | None
    cores: int
    memory: int
    gpus: int
    registered: datetime | None
    last_seen: datetime | None
    running_jobs: int
    reason: str | None = Field(None, description="why it ended (or is stopping)")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorBody
