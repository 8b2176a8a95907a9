"""A job the pilot holds, from the moment it takes it until it reports its end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from farside_protocol.models import Resources
from farside_protocol.pilot_api import Assignment

from .limits import UsageSeries
from .workers import WorkerProcess


@dataclass
class HeldJob:
    """A job this pilot holds: queued until it starts, then running on ``worker``.

    It may start once its payload is here and, if it has inputs, their outcome bytes.
    """

    assignment: Assignment
    payload: bytes | None = None
    inputs: dict[int, bytes] | None = None
    worker: WorkerProcess | None = None
    started: float = 0.0
    # when the pilot took it (monotonic): a job it cannot start soon is given back
    held_since: float = field(default_factory=time.monotonic)
    devices: list[str] = field(default_factory=list)  # the GPUs it was given
    peak_rss: int = 0  # of the worker's process tree, as the limit watch saw it
    # its GPUs' memory in use (peak, bytes) and utilisation (summed over samples), as
    # nvidia-smi saw them
    peak_gpu_memory: int = 0
    gpu_utilization_sum: float = 0.0
    gpu_samples: int = 0
    #: its memory and CPU over time, reported with its outcome (the monitor's plots)
    series: UsageSeries = field(default_factory=UsageSeries)

    @property
    def gpu_utilization(self) -> float | None:
        """Mean utilisation of its GPUs over the samples taken (None: none taken)."""
        return self.gpu_utilization_sum / self.gpu_samples if self.gpu_samples else None

    @property
    def job_id(self) -> int:
        return self.assignment.job_id

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def resources(self) -> Resources:
        return self.assignment.resources

    @property
    def ready(self) -> bool:
        return self.payload is not None and (self.inputs is not None or not self.assignment.inputs)
