"""A real HTCondor pool for tests: ``scripts/htcondor.sh`` starts it, these helpers use it.

The pool (a personal HTCondor in a Debian trixie chroot) runs jobs as its own unprivileged
user, never as root, so a gateway under test keeps its state where that user can reach and
write: in the pool's shared directory (``.../htcondor/shared``, bind-mounted into the
chroot), not pytest's private ``/tmp/pytest-of-*``, and with a permissive umask. Everything here
is for tests only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.harness import GatewayProcess, run_script


def start_pool() -> Path:
    """Run ``scripts/htcondor.sh`` (idempotent) and return its wrapper directory; fail the
    session with the script's own words if it cannot."""
    if os.geteuid() != 0:
        pytest.fail(
            "the htcondor tests need root: scripts/htcondor.sh builds a chroot and mounts into "
            "it (run them as root, or leave them out with -m 'not htcondor')"
        )
    bin_dir = Path(run_script("htcondor.sh", timeout=900, fails="could not start the test pool"))
    if not (bin_dir / "condor_q").exists():
        pytest.fail(f"scripts/htcondor.sh printed {bin_dir!s}, which holds no condor_q")
    return bin_dir


def condor(bin_dir: Path, tool: str, *args: str) -> str:
    """Run one of the pool's tools; its stdout (a failure fails the test)."""
    done = subprocess.run(
        [str(bin_dir / tool), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{tool} {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def job_ads(bin_dir: Path, tool: str, constraint: str, attrs: str) -> list[dict[str, Any]]:
    """Ads from ``condor_q`` or ``condor_history`` matching ``constraint``."""
    out = condor(bin_dir, tool, "-json", "-attributes", attrs, "-constraint", constraint)
    return json.loads(out) if out.strip() else []


def site_jobs(bin_dir: Path, site: str, tool: str = "condor_q") -> dict[str, dict[str, Any]]:
    """The pool's jobs of one farside site, by ``ClusterId.ProcId``."""
    attrs = "ClusterId,ProcId,JobStatus,FarsidePilot,RemoveReason,HoldReason,ExitCode"
    ads = job_ads(bin_dir, tool, f'FarsideSite == "{site}"', attrs)
    return {f"{ad['ClusterId']}.{ad['ProcId']}": ad for ad in ads}


class CondorGateways:
    """Starts gateways whose sites submit to the pool; removes their pilot jobs after."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        # pilots run as the pool's user, inside the pool's chroot: the gateway's state dir
        # must be in the directory scripts/htcondor.sh shares with it, and writable
        self.base = Path(
            tempfile.mkdtemp(prefix="farside-htcondor-", dir=bin_dir.parent / "shared")
        )
        self.base.chmod(0o777)
        self.sites: list[str] = []
        self.gateways: list[GatewayProcess] = []

    def site(self, **settings: Any) -> dict[str, Any]:
        """An htcondor site table with a name of its own (so cleanup finds its jobs)."""
        name = f"condor-{uuid.uuid4().hex[:8]}"
        self.sites.append(name)
        options = {"bin_dir": str(self.bin_dir), **settings.pop("options", {})}
        defaults = {"cores": 1, "memory": "512 MiB", "min_warm": 0, "max_pilots": 4}
        return {"name": name, "plugin": "htcondor", **defaults, **settings, "options": options}

    def start(self, **settings: Any) -> GatewayProcess:
        old = os.umask(0)  # what the gateway creates, pilots (another uid) may write
        try:
            gw = GatewayProcess(self.base / f"gateway{len(self.gateways)}", None, **settings)
            self.gateways.append(gw)
            return gw.start()
        finally:
            os.umask(old)

    def shared_dir(self, name: str) -> Path:
        """A directory the test and its pilots' jobs may both write."""
        path = self.base / name
        path.mkdir(mode=0o777)
        path.chmod(0o777)
        return path

    def failure_report(self) -> str:
        """Each gateway's and pilot's log tail, and the site jobs the pool still holds."""
        parts = [gw.failure_report() for gw in self.gateways]
        for name in self.sites:
            with contextlib.suppress(Exception):
                parts.append(f"--- condor_q of site {name}: {site_jobs(self.bin_dir, name)}")
        return "\n".join(parts)

    def close(self) -> None:
        for gw in self.gateways:
            with contextlib.suppress(Exception):
                gw.stop()
        for name in self.sites:
            # pilots of a batch system outlive their gateway; a test's must not
            with contextlib.suppress(Exception):
                condor(self.bin_dir, "condor_rm", "-constraint", f'FarsideSite == "{name}"')
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def condor_gateways(bin_dir: Path) -> Iterator[CondorGateways]:
    made = CondorGateways(bin_dir)
    try:
        yield made
    finally:
        made.close()
