"""The ``htcondor`` site: each pilot is one HTCondor job on the site's schedd.

The plugin drives HTCondor through its command-line tools (``condor_submit``, ``condor_q``,
``condor_history``, ``condor_rm``, ``condor_status``), not the Python bindings, because:

* every submit host has the tools, configured for its pool and its security; the bindings
  are an extra dependency whose wheel must suit the pool's version and authentication;
* the bindings block; a tool runs as an asyncio subprocess, so a slow schedd never stalls
  the gateway's event loop, and one that hangs is killed after ``command_timeout``;
* ``bin_dir`` and ``command_prefix`` reach any schedd the tools can: a wrapper directory
  (the chroot'ed test pool of ``scripts/htcondor.sh``), ``sudo -u``, or a login shell;
* the tools print ClassAds as JSON (``-json``), so nothing is parsed from columns.

Each pilot's batch id is ``ClusterId.ProcId``, the id the pilot reads from its own job ad
(``_CONDOR_JOB_AD``) when it registers. The pilot's script and submit description are kept in
its work directory (``pilot.sh``, ``pilot.sub``) for operators to read or resubmit; its output
goes to the pilot's log. Execute nodes must see the gateway's state directory at the same
path (a shared file system) and be able to write there as the user jobs run as.

What ``observe`` reports, by ``JobStatus``:

=====================  ============================================================
idle (1)               QUEUED
running (2),           RUNNING (a suspended pilot still holds its jobs; the lease
transferring (6),      timeout decides if it stays silent too long)
suspended (7)
removed (3), still     RUNNING: the pilot has had SIGTERM and is finishing (it reports
in the queue           its jobs and says goodbye within ``vacate_time``)
held (5)               GONE, ``held: <HoldReason>``; the plugin removes the job, because
                       a held pilot would never register and farside starts another
completed (4)          GONE, ``exited with code N`` / ``killed by signal N``
not in the queue       GONE with the reason from ``condor_history``: ``removed:
                       <RemoveReason>``, or as for completed; none if it has no record
=====================  ============================================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from farside_protocol import ConfigurationError

from .base import BatchScriptOptions, BatchState, BatchStatus, PilotLaunch, Site, SubmitError
from .batch_command import BatchCommandSite, SiteCommandError

log = logging.getLogger(__name__)

MiB = 1024**2
_JOB_ID = re.compile(r"^\d+\.\d+$")
_SUBMITTED = re.compile(r"^\s*(\d+)\.(\d+)\s*-", re.MULTILINE)
_SUBMIT_KEY = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_.]*$")
# attributes of a job ad the plugin reads
_ATTRS = "ClusterId,ProcId,JobStatus,HoldReason,RemoveReason,ExitCode,ExitBySignal,ExitSignal"
_CHUNK = 500  # job ids per condor_q / condor_history call: keeps command lines short


class HTCondorOptions(BatchScriptOptions):
    """Settings of an ``htcondor`` site (its ``options`` table)."""

    model_config = ConfigDict(extra="forbid")

    bin_dir: Path | None = Field(
        None,
        description="Directory holding condor_submit, condor_q, condor_rm, condor_history and "
        "condor_status; default: found on PATH. The test pool's wrappers: the directory "
        "scripts/htcondor.sh prints.",
    )
    command_prefix: list[str] = Field(
        default_factory=list,
        description="Words put before every HTCondor command, e.g. ['sudo', '-n', '-u', "
        "'condoruser'] to submit as another user.",
    )
    pool: str | None = Field(
        None, description="Central manager to ask (`-pool`); default: the tools' configuration."
    )
    schedd: str | None = Field(
        None, description="Schedd to submit to and query (`-name`); default: the local one."
    )
    universe: str = Field(
        "vanilla",
        pattern=r"^[a-z]+$",
        description="HTCondor universe of pilot jobs; e.g. `container` with a container_image "
        "in extra_submit.",
    )
    requirements: str | None = Field(
        None,
        description="ClassAd expression the execute slot must match, e.g. "
        "'(OpSysAndVer == \"AlmaLinux9\")'.",
    )
    extra_submit: dict[str, str] = Field(
        default_factory=dict,
        description="More submit-description commands, written after the plugin's own (so they "
        "win), e.g. {accounting_group = 'group_physics', '+ProjectName' = '\"farside\"'}.",
    )
    vacate_time: int = Field(
        60,
        ge=0,
        description="Seconds a removed pilot gets between SIGTERM and SIGKILL "
        "(job_max_vacate_time), to report its jobs and say goodbye.",
    )

    @field_validator("extra_submit")
    @classmethod
    def _plain_commands(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _SUBMIT_KEY.match(key) or key.lower() == "queue":
                raise ValueError(f"{key!r} is not a submit command this option may set")
            if "\n" in text or "\r" in text:
                raise ValueError(f"the value of {key!r} must be one line")
        return value


def submit_description(site: Site, launch: PilotLaunch, script: Path) -> str:
    """The submit description of one pilot job (pure: what ``condor_submit`` reads)."""
    options: HTCondorOptions = site.options
    cfg = site.config
    lines = [
        f"# farside pilot {launch.pilot_id} of site {site.name}",
        f"universe = {options.universe}",
        f"executable = {script}",
        f"initialdir = {launch.workdir}",
        # the script sends stderr to stdout: one log, in order (see submit())
        f"output = {launch.log_path}",
        "should_transfer_files = NO",
        "notification = never",
        f"request_cpus = {cfg.cores}",
        f"request_memory = {max(1, math.ceil(cfg.memory / MiB))}",
    ]
    if cfg.gpus:
        lines.append(f"request_gpus = {cfg.gpus}")
    if options.requirements:
        lines.append(f"requirements = {options.requirements}")
    lines.append(f"job_max_vacate_time = {options.vacate_time}")
    lines += [f'+FarsideSite = "{site.name}"', f"+FarsidePilot = {launch.pilot_id}"]
    if cfg.walltime:
        # the pilot leaves before its walltime by itself; this is the batch system's limit
        lines += [
            f"+MaxRuntime = {cfg.walltime}",
            "periodic_remove = (JobStatus == 2) && "
            f"(time() - JobCurrentStartDate > {cfg.walltime})",
        ]
    lines += [f"{key} = {value}" for key, value in options.extra_submit.items()]
    lines.append("queue 1")
    return "\n".join(lines) + "\n"


def parse_submitted(stdout: str) -> str:
    """``ClusterId.ProcId`` from ``condor_submit -terse`` (``"12.0 - 12.0"``)."""
    found = _SUBMITTED.search(stdout)
    if not found:
        raise SubmitError(f"condor_submit printed no job id: {stdout.strip()[:500]!r}")
    return f"{found.group(1)}.{found.group(2)}"


def parse_ads(stdout: str, command: str) -> list[dict[str, Any]]:
    """Job ads from a ``-json`` listing (no output at all: no ads)."""
    if not stdout.strip():
        return []
    try:
        ads = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise SiteCommandError(
            f"{command} printed no JSON ({exc}): {stdout.strip()[:300]!r}"
        ) from None
    if not isinstance(ads, list):
        raise SiteCommandError(f"{command} printed JSON that is not a list of job ads")
    return [ad for ad in ads if isinstance(ad, dict)]


def ad_id(ad: dict[str, Any]) -> str:
    return f"{ad.get('ClusterId')}.{ad.get('ProcId')}"


def ad_status(ad: dict[str, Any], in_queue: bool = True) -> BatchStatus:
    """What one job ad (from the queue, else the history) says of its pilot."""
    status = ad.get("JobStatus")
    if status == 1:
        return BatchStatus(BatchState.QUEUED)
    # removed but not yet out of the queue: the pilot got SIGTERM and may still report its
    # jobs; calling it gone now would retry them while they finish
    if status in (2, 6, 7) or (status == 3 and in_queue):
        return BatchStatus(BatchState.RUNNING)
    if status == 5:
        return BatchStatus(BatchState.GONE, f"held: {ad.get('HoldReason') or 'no reason given'}")
    if status == 3:
        return BatchStatus(BatchState.GONE, f"removed: {ad.get('RemoveReason') or 'no reason'}")
    if status == 4:
        if ad.get("ExitBySignal"):
            return BatchStatus(BatchState.GONE, f"killed by signal {ad.get('ExitSignal')}")
        return BatchStatus(BatchState.GONE, f"exited with code {ad.get('ExitCode')}")
    return BatchStatus(BatchState.GONE, f"unknown JobStatus {status!r}")


@dataclass
class HTCondorSite(BatchCommandSite):
    """Pilots as HTCondor jobs; see the module docstring."""

    Options = HTCondorOptions
    options: HTCondorOptions = field(init=False)
    #: HTCondor's hold reasons for a job over its memory (code 34), by version
    OUT_OF_MEMORY = ("over memory limit", "memory usage exceeded", "MemoryLimitExceeded")
    TOOLS = (
        "install HTCondor's tools or point the site's options.bin_dir at them (for the test "
        "pool: the directory scripts/htcondor.sh prints)"
    )

    # ------------------------------------------------------------ plugin interface

    async def start(self) -> None:
        """Check that the pool answers, so a wrong setting fails at start, not per pilot."""
        await super().start()  # the template
        try:
            done = await self.run("condor_status", "-schedd", "-af", "Name")
        except SiteCommandError as exc:
            raise ConfigurationError(str(exc)) from None
        if done.code != 0 or not done.out.strip():
            raise ConfigurationError(
                f"site {self.name!r}: the HTCondor pool does not answer "
                f"(condor_status exited {done.code}: {_brief(done.err or done.out)}). Start the "
                "pool (for the tests: sudo bash scripts/htcondor.sh) or fix the site's "
                "options.bin_dir / options.pool."
            )

    def script_header(self, launch: PilotLaunch) -> str:
        # stderr into stdout, not `error =` in the description: two descriptors on one file
        # would overwrite each other's lines
        return "exec 2>&1"

    async def submit_job(self, launch: PilotLaunch) -> str:
        script = self.render_script(launch)
        script_path = launch.workdir / "pilot.sh"
        submit_path = launch.workdir / "pilot.sub"
        description = submit_description(self, launch, script_path)
        await asyncio.to_thread(_write_files, script_path, script, submit_path, description)
        try:
            done = await self.run("condor_submit", "-terse", str(submit_path))
        except SiteCommandError as exc:
            raise SubmitError(str(exc)) from None
        if done.code != 0:
            raise SubmitError(f"condor_submit exited {done.code}: {_brief(done.err or done.out)}")
        return parse_submitted(done.out)

    async def query(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        # an error here propagates: the provisioner retries, where treating "no answer" as
        # "no jobs" would declare every pilot lost
        wanted = [b for b in batch_ids if _JOB_ID.match(b)]
        states: dict[str, BatchStatus] = {}
        held: list[str] = []
        for chunk in _chunks(wanted):
            for ad in await self._ads("condor_q", chunk):
                states[ad_id(ad)] = ad_status(ad)
                if ad.get("JobStatus") == 5:
                    held.append(ad_id(ad))
        missing = [b for b in wanted if b not in states]
        for chunk in _chunks(missing):
            # the queue answered, so these are gone; the history only adds why
            try:
                ads = await self._ads("condor_history", [*chunk, "-limit", str(len(chunk))])
            except SiteCommandError as exc:
                log.warning("site %s: no reason for ended pilots: %s", self.name, exc)
                ads = []
            for ad in ads:
                if ad_id(ad) in missing:
                    states[ad_id(ad)] = ad_status(ad, in_queue=False)
        for batch_id in held:
            await self.cancel(batch_id)
        return states

    async def cancel(self, batch_id: str) -> None:
        """``condor_rm``: the pilot gets SIGTERM, then SIGKILL after ``vacate_time``."""
        await self._remove(batch_id)

    async def force_cancel(self, batch_ids: list[str]) -> None:
        """Out of the queue at once, vacating or not (``condor_rm -forcex``)."""
        await self._remove("-forcex", *batch_ids)

    async def _remove(self, *args: str) -> None:
        try:
            done = await self.run("condor_rm", *args)
        except SiteCommandError as exc:
            log.warning("site %s: could not remove pilot job(s) %s: %s", self.name, args, exc)
            return
        if done.code != 0 and "not found" not in (done.err + done.out):
            log.warning(
                "site %s: condor_rm %s exited %d: %s",
                self.name,
                " ".join(args),
                done.code,
                _brief(done.err or done.out),
            )

    # ------------------------------------------------------------ commands

    def command(self, tool: str, *args: str) -> list[str]:
        """The argument vector that runs ``tool`` with this site's options."""
        options = self.options
        program = str(options.bin_dir / tool) if options.bin_dir else tool
        where: list[str] = []
        if options.pool:
            where += ["-pool", options.pool]
        if options.schedd and tool != "condor_status":
            where += ["-name", options.schedd]
        return [*options.command_prefix, program, *where, *args]

    async def _ads(self, tool: str, args: list[str]) -> list[dict[str, Any]]:
        done = await self.run(tool, "-json", "-attributes", _ATTRS, *args)
        if done.code != 0:
            raise SiteCommandError(f"{tool} exited {done.code}: {_brief(done.err or done.out)}")
        return parse_ads(done.out, tool)


def _write_files(script_path: Path, script: str, submit_path: Path, description: str) -> None:
    script_path.write_text(script)
    script_path.chmod(0o755)
    submit_path.write_text(description)


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _brief(text: str, limit: int = 600) -> str:
    """A command's message on one line; a long one keeps its start (what failed) and its
    end (HTCondor's advice)."""
    flat = " ".join(text.split())
    half = limit // 2
    return flat if len(flat) <= limit else f"{flat[:half]} ... {flat[-half:]}"
