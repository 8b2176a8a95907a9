"""Wire models of workflow runs (``/workflows``).

A workflow run is a Python function (the *body*) that runs as a job of kind ``workflow`` on
a pilot and submits further jobs, its *children*, through a token the gateway gives that
attempt of the body alone. Every child carries a *journal key* naming its place in the body
and its call, so when the body runs again (its pilot was lost, the run was paused and
resumed, or retried) a call it already made returns the job it made then: finished children
are not evaluated twice. The gateway keeps the run's state; the notebook only watches it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from .models import Base64, Name, Resources, _Strict
from .states import JobState

#: the most a body may report as its progress (JSON text), so a run's row stays small
MAX_REPORT_BYTES = 16 * 1024


class WorkflowState(StrEnum):
    QUEUED = "queued"  # the body waits for a pilot
    RUNNING = "running"
    PAUSED = "paused"  # the body was stopped on request; children kept running
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"  # killed: the body and its unfinished children were cancelled

    @property
    def terminal(self) -> bool:
        return self in {WorkflowState.FINISHED, WorkflowState.FAILED, WorkflowState.CANCELLED}


def workflow_state(body_state: str, paused: bool) -> WorkflowState:
    """A run's state from its body job's state and whether it was paused.

    >>> workflow_state("assigned", False), workflow_state("cancelled", True)
    (<WorkflowState.QUEUED: 'queued'>, <WorkflowState.PAUSED: 'paused'>)
    """
    if paused:
        return WorkflowState.PAUSED
    state = JobState(body_state)
    if state in {JobState.PENDING, JobState.QUEUED, JobState.ASSIGNED}:
        return WorkflowState.QUEUED
    return WorkflowState(state.value)


class WorkflowSpec(_Strict):
    """A run to start: the body's pickled call and what its job needs."""

    name: Name
    payload: Base64 = Field(description="the body's pickled call (farside_protocol.payload)")
    resources: Resources = Field(
        default_factory=Resources,
        description="of the body's job; its walltime is the run's longest life without a "
        "pause (the body mostly waits for its children)",
    )
    sites: list[Name] = Field(default_factory=list, description="allowed sites for the body")
    env: Name | None = None
    priority: int = Field(0, ge=-1000, le=1000)


class WorkflowReport(_Strict):
    """What a body tells about itself (iteration, best so far, ...): any JSON object."""

    values: dict[str, Any]

    @field_validator("values")
    @classmethod
    def _small(cls, values: dict[str, Any]) -> dict[str, Any]:
        import json

        try:
            size = len(json.dumps(values))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"report values must be JSON: {exc}") from None
        if size > MAX_REPORT_BYTES:
            raise ValueError(
                f"report is {size} bytes of JSON, more than {MAX_REPORT_BYTES}: report "
                "summaries (counts, the best point), not data"
            )
        return values


class WorkflowInfo(_Strict):
    id: int
    name: str
    owner: str
    state: WorkflowState
    body_job_id: int = Field(description="the body's current job (a new one on resume/retry)")
    body_runs: int = Field(description="jobs the body has had: 1 plus resumes and retries")
    attempts: int = Field(description="attempts of the current body job (a lost pilot adds one)")
    children: dict[str, int] = Field(description="child jobs by state")
    report: dict[str, Any] = Field(description="the body's last farside.report(...)")
    error: str | None = Field(None, description="why the body failed or was cancelled")
    created: datetime
    ended: datetime | None


class WorkflowList(_Strict):
    workflows: list[WorkflowInfo]


class WorkflowStarted(_Strict):
    id: int
    body_job_id: int
