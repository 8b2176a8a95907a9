"""Slurm for tests: the cluster ``scripts/slurm.sh`` starts, and ways to look into it.

Import the fixture into a test module (``from slurm_support import slurm_cluster``); it runs
the script once per session, which installs and starts Slurm if needed and is quick when
Slurm already runs.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.harness import run_script


@pytest.fixture(scope="session")
def slurm_cluster() -> Path:
    """The running single-node Slurm; its config directory."""
    fails = "could not start Slurm; it needs root and Debian's slurm-wlm and munge packages"
    return Path(run_script("slurm.sh", timeout=600, fails=fails))


def slurm_site(**overrides: Any) -> dict[str, Any]:
    """A Slurm site of 1-core pilots that come on demand and leave after 2 s idle.

    The name is unique, so that jobs of concurrent test runs are told apart in squeue.
    """
    site: dict[str, Any] = {
        "name": f"slurm-{uuid.uuid4().hex[:6]}",
        "plugin": "slurm",
        "cores": 1,
        "memory": "1 GiB",
        "min_warm": 0,
        "max_pilots": 8,
        "idle_timeout": 2,
        "options": {"partition": "cpu"},
    }
    site.update(overrides)
    return site


def squeue(*args: str) -> dict[str, tuple[str, str]]:
    """Job id → (name, state) of the jobs squeue lists (pending and running by default)."""
    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i|%j|%T", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        job_id, name, state = line.strip().split("|")
        jobs[job_id] = (name, state)
    return jobs


def site_jobs(site: str, *args: str) -> dict[str, tuple[str, str]]:
    """The jobs of one site's pilots (named ``farside-<site>-<pilot id>``)."""
    return {i: j for i, j in squeue(*args).items() if j[0].startswith(f"farside-{site}-")}
