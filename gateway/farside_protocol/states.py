"""The states and classes everything speaks of: jobs, pilots, sites, error classes, the
resources a job may run out of. Plain ``StrEnum``s, free of pydantic, so the pilot's
worker and runner use them without importing the wire models; a member equals its string
(``JobState.RUNNING == "running"``), which is what the database stores.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "ErrorClass",
    "JobState",
    "PilotState",
    "Resource",
    "SiteStatus",
]


class JobState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING})


class ErrorClass(StrEnum):
    """Why an attempt failed; decides whether and how it is retried."""

    USER = "user"  # the function raised: retried only if max_attempts allows
    SYSTEM = "system"  # lost pilot, killed batch job, node failure: retried, attempts not used
    RESOURCE = "resource"  # out of memory, walltime exceeded
    DEPENDENCY = "dependency"  # a parent job failed or was cancelled
    CANCELLED = "cancelled"


class PilotState(StrEnum):
    """A pilot's life, as the gateway records it."""

    SUBMITTED = "submitted"  # handed to the site's batch system; not registered yet
    RUNNING = "running"  # registered, taking work
    RETIRING = "retiring"  # takes no new work; leaves when its jobs have ended
    EXITED = "exited"  # said goodbye
    LOST = "lost"  # fell silent, or its batch job vanished
    FAILED = "failed"  # the batch system would not start it

    @classmethod
    def live(cls) -> tuple[PilotState, ...]:
        """The states of a pilot that may still hold or take work."""
        return (cls.SUBMITTED, cls.RUNNING, cls.RETIRING)


class SiteStatus(StrEnum):
    ONLINE = "online"
    DRAINING = "draining"  # no new work; what its pilots hold finishes
    OFFLINE = "offline"  # its pilots are stopped and their jobs retried elsewhere


class Resource(StrEnum):
    """What a job may run out of (a *resource* error), and get more of when retried."""

    MEMORY = "memory"
    WALLTIME = "walltime"
