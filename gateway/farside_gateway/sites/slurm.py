"""The ``slurm`` site: each pilot is one Slurm batch job.

``submit`` writes a batch script (``#SBATCH`` lines for the site's slot, then the pilot) and
runs ``sbatch --parsable``; the batch id is the Slurm job id, and the pilot finds the same id
in ``SLURM_JOB_ID``. ``observe`` asks ``squeue`` once for all ids (``sacct`` for those squeue
has forgotten, where accounting is enabled). ``cancel`` sends SIGTERM to the batch shell
alone, which *is* the pilot (the script ``exec``\\ s it), so it stops taking work, reports and
says goodbye before its job ends; a job still pending is simply cancelled.

Every command runs as an asyncio subprocess: a slow ``slurmctld`` never blocks the gateway.
``docs/how-to/slurm.md`` shows how an operator declares a Slurm site.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field

from farside_protocol import ConfigurationError

from .base import BatchScriptOptions, BatchState, BatchStatus, PilotLaunch, SubmitError
from .batch_command import BatchCommandSite, SiteCommandError

log = logging.getLogger(__name__)

MiB = 1024**2

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
# anything else (COMPLETED, CANCELLED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED,
# BOOT_FAIL, DEADLINE, SPECIAL_EXIT, REVOKED) has ended
_UNKNOWN_IDS = "Invalid job id specified"
_ACCOUNTING_OFF = "accounting storage is disabled"


class SlurmOptions(BatchScriptOptions):
    """The ``options`` table of a site with ``plugin = "slurm"``."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="`--partition`; none: Slurm's default.")
    account: str | None = Field(None, description="`--account` charged for the pilots.")
    qos: str | None = Field(None, description="`--qos`.")
    reservation: str | None = Field(None, description="`--reservation`.")
    sbatch_args: list[str] = Field(
        default_factory=list,
        description="Further `sbatch` arguments, e.g. ['--constraint=skylake']; on the command "
        "line, so they override the script's #SBATCH lines.",
    )
    sbatch: str = Field("sbatch", description="The `sbatch` command (name on PATH or a path).")
    squeue: str = Field("squeue", description="The `squeue` command.")
    scancel: str = Field("scancel", description="The `scancel` command.")
    sacct: str = Field("sacct", description="The `sacct` command (used only with accounting).")
    sinfo: str = Field("sinfo", description="The `sinfo` command (checked at gateway start).")


@dataclass
class SlurmSite(BatchCommandSite):
    """Pilots as Slurm batch jobs; see the module docstring."""

    Options = SlurmOptions
    options: SlurmOptions = field(init=False)
    OUT_OF_MEMORY = ("OUT_OF_MEMORY",)  # the job state Slurm gives it
    TOOLS = (
        "install the Slurm client on the gateway's host, or set options.sbatch/squeue/"
        "scancel/sacct/sinfo to their paths"
    )
    _accounting: bool = field(default=True, init=False)

    def command(self, tool: str, *args: str) -> list[str]:
        """``tool`` is one of sbatch, squeue, scancel, sacct, sinfo: its option says where."""
        return [getattr(self.options, tool), *args]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        opts = self.options
        commands = [opts.sbatch, opts.squeue, opts.scancel, opts.sinfo]
        missing = [c for c in commands if shutil.which(c) is None]
        if missing:
            raise ConfigurationError(
                f"site {self.name!r}: Slurm command(s) not found: {', '.join(missing)}. Install "
                "the Slurm client on the gateway's host, or set options.sbatch/squeue/scancel/"
                "sinfo to their paths."
            )
        await super().start()  # the template
        try:
            done = await self.run("sinfo", "--noheader", "--format=%R")
        except SiteCommandError as exc:
            raise ConfigurationError(str(exc)) from None
        if done.code != 0:
            raise ConfigurationError(
                f"site {self.name!r}: Slurm does not answer ({opts.sinfo}: {done.err.strip()}). "
                "Is slurmctld running and slurm.conf (or SLURM_CONF) right on this host?"
            )
        partitions = set(done.out.split())
        if opts.partition and opts.partition not in partitions:
            log.warning(
                "site %s: partition %r is not among Slurm's (%s); sbatch will refuse pilots",
                self.name,
                opts.partition,
                ", ".join(sorted(partitions)),
            )

    # ------------------------------------------------------------------ submit

    def script_header(self, launch: PilotLaunch) -> str:
        """The ``#SBATCH`` lines of one pilot's job: its slot, where it logs, the options."""
        cfg, opts = self.config, self.options
        args = [
            f"--job-name=farside-{self.name}-{launch.pilot_id}",
            f"--output={_slurm_path(launch.log_path)}",
            f"--chdir={launch.workdir}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={cfg.cores}",
            f"--mem={max(1, math.ceil(cfg.memory / MiB))}M",
        ]
        if cfg.gpus:
            args.append(f"--gres=gpu:{cfg.gpus}")
        if cfg.walltime:
            args.append(f"--time={slurm_time(cfg.walltime)}")
        for name in ("partition", "account", "qos", "reservation"):
            value = getattr(opts, name)
            if value:
                args.append(f"--{name}={value}")
        return "\n".join(f"#SBATCH {arg}" for arg in args)

    async def submit_job(self, launch: PilotLaunch) -> str:
        script = launch.log_path.with_suffix(".sbatch")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(self.render_script(launch))
        try:
            done = await self.run("sbatch", "--parsable", *self.options.sbatch_args, str(script))
        except SiteCommandError as exc:
            raise SubmitError(str(exc)) from None
        out = done.out.strip()
        if done.code != 0:
            raise SubmitError(
                f"sbatch refused pilot {launch.pilot_id} (exit {done.code}): "
                f"{done.err.strip() or out or 'no message'}"
            )
        batch_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if not batch_id.isdigit():
            raise SubmitError(f"sbatch printed no job id for pilot {launch.pilot_id}: {out!r}")
        return batch_id

    # ------------------------------------------------------------------ observe

    async def query(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        done = await self.run(
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={','.join(batch_ids)}",
            "--format=%i|%T|%r",
        )
        if done.code != 0 and _UNKNOWN_IDS not in done.err:
            # never take a failing squeue for "all gone": that would lose every pilot
            raise SiteCommandError(f"squeue failed (exit {done.code}): {done.err.strip()}")
        states = parse_squeue(done.out) if done.code == 0 else {}
        forgotten = [i for i in batch_ids if i not in states]
        if forgotten and self._accounting:
            states.update(await self._sacct(forgotten))
        return states

    async def _sacct(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        args = ["--noheader", "--parsable2", "--allocations", f"--jobs={','.join(batch_ids)}"]
        try:
            done = await self.run("sacct", *args, "--format=JobIDRaw,State")
        except SiteCommandError as exc:  # no sacct, or it hangs: squeue alone, this time
            log.warning("site %s: %s", self.name, exc)
            return {}
        if done.code != 0:
            if _ACCOUNTING_OFF in (done.err + done.out) or "not found" in done.err:
                self._accounting = False  # it will not come back without a restart
            else:
                log.warning("site %s: sacct failed (exit %d): %s", self.name, done.code, done.err)
            return {}
        return parse_sacct(done.out)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, batch_id: str) -> None:
        # --batch: only the batch shell, i.e. the pilot, not the jobs it runs; those it
        # stops itself after their grace, and reports
        done = await self.run("scancel", "--batch", "--signal=TERM", batch_id)
        if done.code == 0:
            return
        # a pending job cannot be signalled; one that already ended needs nothing
        done = await self.run("scancel", batch_id)
        if done.code != 0 and _UNKNOWN_IDS not in done.err and "already completing" not in done.err:
            raise SiteCommandError(
                f"scancel {batch_id} failed (exit {done.code}): {done.err.strip()}"
            )

    async def force_cancel(self, batch_ids: list[str]) -> None:
        await self.run("scancel", *batch_ids)


def batch_status(state: str, reason: str = "") -> BatchStatus:
    """Map a Slurm job state (and squeue's reason) onto a :class:`BatchStatus`.

    >>> batch_status("PENDING", "Resources")
    BatchStatus(state=<BatchState.QUEUED: 'queued'>, reason=None)
    >>> batch_status("CANCELLED", "None").reason
    'CANCELLED'
    >>> batch_status("TIMEOUT", "TimeLimit").reason
    'TIMEOUT: TimeLimit'
    """
    state = state.strip()
    word = state.split()[0].upper() if state else ""
    if word in _QUEUED:
        return BatchStatus(BatchState.QUEUED)
    if word in _RUNNING:
        return BatchStatus(BatchState.RUNNING)
    reason = reason.strip()
    why = state if reason in ("", "None", "(null)") else f"{state}: {reason}"
    return BatchStatus(BatchState.GONE, why or None)


def parse_squeue(out: str) -> dict[str, BatchStatus]:
    """Parse ``squeue --noheader --format=%i|%T|%r`` output."""
    states: dict[str, BatchStatus] = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = batch_status(parts[1], parts[2] if len(parts) > 2 else "")
    return states


def parse_sacct(out: str) -> dict[str, BatchStatus]:
    """Parse ``sacct --parsable2 --format=JobIDRaw,State`` output (e.g. ``CANCELLED by 0``)."""
    states: dict[str, BatchStatus] = {}
    for line in out.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id.isdigit() and state:
            states[job_id] = batch_status(state)
    return states


def slurm_time(seconds: int) -> str:
    """Seconds as Slurm's ``D-HH:MM:SS``; Slurm rounds limits up to whole minutes.

    >>> slurm_time(90), slurm_time(2 * 86400 + 3600)
    ('0-00:01:30', '2-01:00:00')
    """
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _slurm_path(path: Path) -> str:
    """A path for ``--output``: Slurm expands ``%j`` and the like, so ``%`` is doubled."""
    return str(path).replace("%", "%%")
