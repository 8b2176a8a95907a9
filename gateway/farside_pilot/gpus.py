"""What a job's GPUs are doing: memory in use and utilisation, read from ``nvidia-smi``.

A GPU job has its devices to itself (``CUDA_VISIBLE_DEVICES``, see ``slots``), so a
device's memory in use and utilisation are the job's. The runner samples every few
seconds while GPU jobs run and reports each attempt's peak memory and mean utilisation
with its outcome. ``nvidia-smi`` ships with NVIDIA's driver wherever a GPU is; without
it (or without a GPU) nothing is sampled and nothing is reported.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: seconds between samples while GPU jobs run (nvidia-smi takes tens of milliseconds)
SAMPLE_INTERVAL = 2.0
QUERY = ["--query-gpu=index,uuid,memory.used,utilization.gpu", "--format=csv,noheader,nounits"]
MIB = 1024**2


@dataclass(frozen=True)
class GpuReading:
    memory: int  # bytes in use
    utilization: float  # percent of the last sample period a kernel ran


def parse_query(text: str) -> dict[str, GpuReading]:
    """Readings by device index *and* by UUID (``CUDA_VISIBLE_DEVICES`` may hold either).

    >>> r = parse_query("0, GPU-1a2b, 1536, 87\\n1, GPU-3c4d, [N/A], [N/A]\\n")
    >>> r["0"], r["GPU-1a2b"] == r["0"], "1" in r
    (GpuReading(memory=1610612736, utilization=87.0), True, False)
    """
    readings: dict[str, GpuReading] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            continue
        index, uuid, memory, utilization = fields
        try:
            reading = GpuReading(int(float(memory) * MIB), float(utilization))
        except ValueError:  # "[N/A]", "[Not Supported]": nothing to say for this device
            continue
        readings[index] = readings[uuid] = reading
    return readings


def read_gpus(command: str = "nvidia-smi", timeout: float = 5.0) -> dict[str, GpuReading]:
    """The machine's GPUs now; empty where there is no ``nvidia-smi`` or it fails."""
    path = shutil.which(command)
    if path is None:
        return {}
    try:
        done = subprocess.run(
            [path, *QUERY], capture_output=True, text=True, timeout=timeout, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("cannot read the GPUs: %s", exc)
        return {}
    return parse_query(done.stdout)
