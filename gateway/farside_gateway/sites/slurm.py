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

import asyncio
import logging
import math
import shlex
import shutil
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field

from farside_protocol import ConfigurationError

from .base import (
    BatchScriptOptions,
    BatchState,
    BatchStatus,
    PilotLaunch,
    Site,
    SubmitError,
    run_command,
)

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
    template: Path | None = Field(
        None,
        description="An operator-written batch script (string.Template) used instead of the "
        "built-in one; it must contain $command (see docs/how-to/slurm.md).",
    )
    sbatch: str = Field("sbatch", description="The `sbatch` command (name on PATH or a path).")
    squeue: str = Field("squeue", description="The `squeue` command.")
    scancel: str = Field("scancel", description="The `scancel` command.")
    sacct: str = Field("sacct", description="The `sacct` command (used only with accounting).")
    sinfo: str = Field("sinfo", description="The `sinfo` command (checked at gateway start).")
    stop_grace: float = Field(
        15.0,
        ge=0,
        description="On `farside gateway` stop: seconds pilots get to leave after SIGTERM before "
        "their jobs are cancelled outright.",
    )


class SlurmCommandError(RuntimeError):
    """A Slurm command failed; the message has its output."""


@dataclass
class SlurmSite(Site):
    """Pilots as Slurm batch jobs; see the module docstring."""

    Options = SlurmOptions
    options: SlurmOptions = field(init=False)
    # jobs of this gateway not seen ended, so that stop() can end them
    _live: set[str] = field(default_factory=set)
    _template: string.Template | None = None
    _accounting: bool = True

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
        if opts.template is not None:
            self._template = _load_template(self.name, opts.template)
        code, out, err = await self._run(opts.sinfo, "--noheader", "--format=%R")
        if code != 0:
            raise ConfigurationError(
                f"site {self.name!r}: Slurm does not answer ({opts.sinfo}: {err.strip()}). Is "
                "slurmctld running and slurm.conf (or SLURM_CONF) right on this host?"
            )
        partitions = set(out.split())
        if opts.partition and opts.partition not in partitions:
            log.warning(
                "site %s: partition %r is not among Slurm's (%s); sbatch will refuse pilots",
                self.name,
                opts.partition,
                ", ".join(sorted(partitions)),
            )

    async def stop(self) -> None:
        """Stop this gateway's pilots: SIGTERM (they report and say goodbye), then cancel."""
        ids = sorted(self._live)
        if not ids:
            return
        await asyncio.gather(*(self.cancel(i) for i in ids), return_exceptions=True)
        deadline = time.monotonic() + self.options.stop_grace
        left = ids
        while left and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            states = await self.observe(left)
            left = [i for i in left if states.get(i, _GONE).state is not BatchState.GONE]
        if left:
            await self._run(self.options.scancel, *left)

    # ------------------------------------------------------------------ submit

    def sbatch_header(self, launch: PilotLaunch) -> str:
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

    def render_script(self, launch: PilotLaunch) -> str:
        header = self.sbatch_header(launch)
        if self._template is None:
            return self.pilot_script(launch, header)
        return self._template.safe_substitute(
            header=header,
            prologue=self.options.prologue or "",
            env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(launch.env.items())),
            command=f"cd {shlex.quote(str(launch.workdir))}\nexec "
            + " ".join(shlex.quote(part) for part in launch.command),
            pilot_id=str(launch.pilot_id),
            site=self.name,
        )

    async def submit(self, launch: PilotLaunch) -> str:
        script = launch.log_path.with_suffix(".sbatch")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(self.render_script(launch))
        opts = self.options
        code, out, err = await self._run(opts.sbatch, "--parsable", *opts.sbatch_args, str(script))
        if code != 0:
            raise SubmitError(
                f"sbatch refused pilot {launch.pilot_id} (exit {code}): "
                f"{err.strip() or out.strip() or 'no message'}"
            )
        batch_id = out.strip().splitlines()[-1].split(";")[0].strip() if out.strip() else ""
        if not batch_id.isdigit():
            raise SubmitError(f"sbatch printed no job id for pilot {launch.pilot_id}: {out!r}")
        self._live.add(batch_id)
        return batch_id

    # ------------------------------------------------------------------ observe

    async def observe(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        self._live.update(batch_ids)
        code, out, err = await self._run(
            self.options.squeue,
            "--noheader",
            "--states=all",
            f"--jobs={','.join(batch_ids)}",
            "--format=%i|%T|%r",
        )
        if code != 0 and _UNKNOWN_IDS not in err:
            # never take a failing squeue for "all gone": that would lose every pilot
            raise SlurmCommandError(f"squeue failed (exit {code}): {err.strip()}")
        states = parse_squeue(out) if code == 0 else {}
        forgotten = [i for i in batch_ids if i not in states]
        if forgotten and self._accounting:
            states.update(await self._sacct(forgotten))
        for batch_id in batch_ids:
            if states.get(batch_id, _GONE).state is BatchState.GONE:
                self._live.discard(batch_id)
        wanted = set(batch_ids)
        return {i: s for i, s in states.items() if i in wanted}

    async def _sacct(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        code, out, err = await self._run(
            self.options.sacct,
            "--noheader",
            "--parsable2",
            "--allocations",
            f"--jobs={','.join(batch_ids)}",
            "--format=JobIDRaw,State",
        )
        if code != 0:
            if _ACCOUNTING_OFF in (err + out) or "not found" in err:
                self._accounting = False  # it will not come back without a restart
            else:
                log.warning("site %s: sacct failed (exit %d): %s", self.name, code, err.strip())
            return {}
        return parse_sacct(out)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, batch_id: str) -> None:
        scancel = self.options.scancel
        # --batch: only the batch shell, i.e. the pilot, not the jobs it runs; those it
        # stops itself after their grace, and reports
        code, _, err = await self._run(scancel, "--batch", "--signal=TERM", batch_id)
        if code == 0:
            return
        # a pending job cannot be signalled; one that already ended needs nothing
        code, _, err = await self._run(scancel, batch_id)
        if code != 0 and _UNKNOWN_IDS not in err and "already completing" not in err:
            raise SlurmCommandError(f"scancel {batch_id} failed (exit {code}): {err.strip()}")

    # ------------------------------------------------------------------ helpers

    async def _run(self, *argv: str) -> tuple[int, str, str]:
        """Run one Slurm command; its exit status, stdout and stderr. Never blocks the loop."""
        done = await run_command(list(argv), self.options.command_timeout)
        return done.code, done.out, done.err


_GONE = BatchStatus(BatchState.GONE)


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


def _load_template(site: str, path: Path) -> string.Template:
    try:
        template = string.Template(path.read_text())
    except OSError as exc:
        raise ConfigurationError(
            f"site {site!r}: cannot read options.template {path}: {exc.strerror}"
        ) from None
    if "command" not in template.get_identifiers():
        raise ConfigurationError(
            f"site {site!r}: options.template {path} has no $command, so it would never start "
            "a pilot; put $header at the top and $command at the end (docs/how-to/slurm.md)"
        )
    return template
