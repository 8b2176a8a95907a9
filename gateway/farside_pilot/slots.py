"""Slot accounting and prefetch: how much of the slot is free, and how much work to ask for.

Pure bookkeeping, no I/O, so the rules are easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass

from farside_protocol.models import Resources

SHORT_JOB = 0.05  # seconds; "well under" the 0.2 s at which a round trip stops mattering
LONG_JOB = 0.2


@dataclass
class Shape:
    """Cores, memory (bytes) and GPUs: of a slot, of what is free, or of what a job needs."""

    cores: int
    memory: int
    gpus: int = 0

    def fits(self, need: Resources) -> bool:
        return need.cores <= self.cores and need.memory <= self.memory and need.gpus <= self.gpus


class Slot:
    """The batch slot the pilot runs on, and what running jobs use of it.

    GPUs are devices, not just a count: each job that asks for GPUs is given its own
    (``take`` returns their ids, for ``CUDA_VISIBLE_DEVICES``), from ``devices`` (the ids
    the batch system gave the slot; default ``0 .. gpus-1``).

    >>> slot = Slot(Shape(4, 8 * 1024**3, 2), devices=["3", "5"])
    >>> slot.take(Resources(gpus=1)), slot.take(Resources(gpus=1))
    (['3'], ['5'])
    >>> slot.release(Resources(gpus=1), ["3"]); slot.take(Resources(gpus=1))
    ['3']
    """

    def __init__(self, total: Shape, devices: list[str] | None = None) -> None:
        self.total = total
        self.free = Shape(total.cores, total.memory, total.gpus)
        ids = devices if devices is not None and len(devices) >= total.gpus else None
        self.free_devices = list(ids[: total.gpus]) if ids else [str(i) for i in range(total.gpus)]

    def fits_slot(self, need: Resources) -> bool:
        return self.total.fits(need)

    def can_start(self, need: Resources) -> bool:
        return self.free.fits(need)

    def take(self, need: Resources) -> list[str]:
        """Take what ``need`` asks for; returns the GPU device ids it is given."""
        if not self.can_start(need):
            raise ValueError(f"job needs {need} but only {self.free} is free")
        self.free.cores -= need.cores
        self.free.memory -= need.memory
        self.free.gpus -= need.gpus
        devices, self.free_devices = (
            self.free_devices[: need.gpus],
            self.free_devices[need.gpus :],
        )
        return devices

    def release(self, need: Resources, devices: list[str] | None = None) -> None:
        self.free.cores = min(self.total.cores, self.free.cores + need.cores)
        self.free.memory = min(self.total.memory, self.free.memory + need.memory)
        self.free.gpus = min(self.total.gpus, self.free.gpus + need.gpus)
        for device in devices or ():
            if device not in self.free_devices:
                self.free_devices.append(device)

    @property
    def busy(self) -> bool:
        return self.free.cores < self.total.cores


class Prefetch:
    """How many jobs to hold beyond the free cores, adapted like TCP slow start.

    While jobs finish in well under a round trip to the gateway, holding more keeps the
    workers busy, so ``extra`` grows by one for each short job that ends (it doubles per
    round). It starts at zero, and a long job sets it back to zero, as soon as it has run
    long (``observe_running``): a job of unknown length must never wait in a pilot that
    cannot start it while another pilot could.

    >>> p = Prefetch(cap=8)
    >>> p.extra
    0
    >>> for _ in range(20): p.observe(0.001)
    >>> p.extra
    8
    >>> p.observe(5.0); p.extra
    0
    """

    def __init__(self, cap: int, initial: int = 0) -> None:
        self.cap = max(0, cap)
        self.extra = min(initial, self.cap)

    def observe(self, wall_time: float) -> None:
        if wall_time < SHORT_JOB:
            self.extra = min(self.cap, max(self.extra, 1) + 1)
        elif wall_time >= LONG_JOB:
            self.extra = 0

    def observe_running(self, longest: float) -> None:
        """A job still running after ``LONG_JOB`` seconds is long already (a Dask worker
        lease runs for as long as its cluster): stop fetching ahead now, not at its end.

        >>> p = Prefetch(cap=8, initial=4); p.observe_running(0.01); p.extra
        4
        >>> p.observe_running(30.0); p.extra
        0
        """
        if longest >= LONG_JOB:
            self.extra = 0

    def want(self, free_cores: int, queued: int) -> int:
        """Jobs to ask for now, given free cores and jobs already waiting locally.

        While jobs still wait locally, asking for each freed place would cost a request per
        job; ask again once the queue is half used up.
        """
        target = free_cores + self.extra
        room = max(0, target - queued)
        if queued and room < (target + 1) // 2:
            return 0
        return room
