"""The site plugin point: one base class for every place pilots run.

The base class owns what all sites share: the pilot's environment (the ``FARSIDE_*``
contract), working and log directories, backoff after failed submissions, and marking a
site unhealthy. A plugin only translates to its batch system.

A plugin subclasses :class:`Site` and implements three coroutines:

``submit(launch)``
    Start one pilot running ``launch.command`` with ``launch.env`` and return the batch
    system's id for it. Raise :class:`SubmitError` with the batch system's message if it
    refuses; the base class backs off.
``observe(batch_ids)``
    Return the :class:`BatchStatus` of each id (its :class:`BatchState` and, when the batch
    system gives one, the reason it ended, e.g. ``"CANCELLED by 0"`` or ``"OUT_OF_MEMORY"``);
    ids the batch system no longer knows may be left out (they count as ``GONE``). A pilot
    whose batch job is gone without having said goodbye is *lost*, and its jobs are retried
    at once as system errors, with the reason in their history.
``cancel(batch_id)``
    Stop that pilot (it gets SIGTERM or the batch system's equivalent first).

and may override ``start()`` and ``stop()``, and name the words its batch system uses for
a job it killed for its memory (``OUT_OF_MEMORY``: such jobs retry with more memory). A
plugin that drives a batch system through its commands subclasses
:class:`~farside_gateway.sites.batch_command.BatchCommandSite` instead.

A plugin's own settings (a Slurm partition, a Kubernetes namespace) come from the site's
``options`` table, validated on load against the plugin's :attr:`Site.Options` model (a
pydantic model; unknown keys are errors), and are then at hand as ``self.options``.
:meth:`Site.pilot_script` renders the shell script that starts a pilot, for plugins whose
batch system runs scripts.

Plugins are found by entry-point name in the group ``farside.sites`` (``plugin = "local"``
in the site's configuration).
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import shlex
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from farside_protocol import ConfigurationError, ErrorClass, env

from ..config import SiteConfig

log = logging.getLogger(__name__)


class BatchState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    GONE = "gone"


@dataclass(frozen=True)
class BatchStatus:
    """What the batch system says of one pilot's batch job."""

    state: BatchState
    reason: str | None = None


class NoOptions(BaseModel):
    """A plugin without settings of its own: ``options`` must be empty."""

    model_config = ConfigDict(extra="forbid")


class BatchScriptOptions(BaseModel):
    """Settings every plugin that submits pilot scripts through commands shares."""

    model_config = ConfigDict(extra="forbid")

    prologue: str | None = Field(
        None,
        description="Shell lines run before the pilot starts, inside its batch job (module "
        "loads, a venv's activate), e.g. 'module load python'.",
    )
    pilot_command: list[str] | None = Field(
        None,
        description="Command that starts a pilot on the batch node; default: the gateway's own "
        "Python with `-m farside_pilot`, which must exist at the same path there (a shared "
        "file system).",
    )
    command_timeout: float = Field(
        60.0, gt=0, description="Seconds a batch-system command may take before it is killed."
    )
    template: Path | None = Field(
        None,
        description="An operator-written batch script (string.Template) used instead of the "
        "built-in one; it must contain $command (see docs/how-to/slurm.md).",
    )
    stop_grace: float = Field(
        15.0,
        ge=0,
        description="On `farside gateway` stop: seconds pilots get to leave after SIGTERM before "
        "their jobs are cancelled outright.",
    )


@dataclass(frozen=True)
class CommandResult:
    """What a batch-system command did: exit status (127: could not start, 124: timed out)
    and its output."""

    code: int
    out: str
    err: str


async def run_command(argv: list[str], limit: float) -> CommandResult:
    """Run one command without blocking the event loop; kill it after ``limit`` seconds."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return CommandResult(127, "", f"cannot run {argv[0]}: {exc}")
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CommandResult(124, "", f"{argv[0]} took longer than {limit:.0f}s")
    return CommandResult(
        proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )


class SubmitError(RuntimeError):
    """The batch system refused a pilot; the message is the batch system's own."""


@dataclass(frozen=True)
class PilotLaunch:
    """Everything needed to start one pilot."""

    pilot_id: int
    command: list[str]
    env: dict[str, str]
    workdir: Path
    log_path: Path


@dataclass
class SiteHealth:
    failures: int = 0
    next_try: float = 0.0
    last_error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.failures < Site.UNHEALTHY_AFTER


@dataclass
class Site(abc.ABC):
    """Base class of site plugins; see the module docstring for the contract."""

    config: SiteConfig
    gateway_url: str
    state_dir: Path
    health: SiteHealth = field(default_factory=SiteHealth)
    options: Any = field(init=False)

    #: the plugin's settings model; ``options`` in the site's configuration must match it
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: words in a batch job's end reason that say the batch system killed it for its memory
    OUT_OF_MEMORY: ClassVar[tuple[str, ...]] = ()
    UNHEALTHY_AFTER = 5
    MAX_BACKOFF = 300.0

    def __post_init__(self) -> None:
        try:
            self.options = self.Options.model_validate(self.config.options)
        except ValidationError as exc:
            lines = [
                f"  options.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigurationError(
                f"site {self.name!r} (plugin {self.config.plugin!r}): invalid options:\n"
                + "\n".join(lines)
            ) from None

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------ plugin interface

    @abc.abstractmethod
    async def submit(self, launch: PilotLaunch) -> str: ...

    @abc.abstractmethod
    async def observe(self, batch_ids: list[str]) -> dict[str, BatchStatus]: ...

    @abc.abstractmethod
    async def cancel(self, batch_id: str) -> None: ...

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (e.g. check the batch system's commands exist)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop this gateway's pilots (``farside up`` on Ctrl-C, a gateway stopped without
        ``--keep-pilots``) and release what the plugin holds."""

    # ------------------------------------------------------------ shared machinery

    def classify_end(self, reason: str | None) -> tuple[ErrorClass, str | None]:
        """Error class (and resource) for the jobs of a lost pilot whose batch job ended
        with ``reason``: out of memory (:attr:`OUT_OF_MEMORY`) is a resource error, which
        retries with more memory; anything else is the system's."""
        if reason and any(word.lower() in reason.lower() for word in self.OUT_OF_MEMORY):
            return ErrorClass.RESOURCE, "memory"
        return ErrorClass.SYSTEM, None

    def pilot_command(self) -> list[str]:
        """The command that starts a pilot: the ``pilot_command`` option if the plugin has
        one and it is set, else this gateway's Python with ``-m farside_pilot``."""
        configured = getattr(self.options, "pilot_command", None)
        return list(configured) if configured else [sys.executable, "-m", "farside_pilot"]

    def launch_for(self, pilot_id: int, token: str) -> PilotLaunch:
        base = self.state_dir / "pilots" / self.name
        workdir = base / str(pilot_id)
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        variables = {
            env.GATEWAY_URL: self.gateway_url,
            env.PILOT_TOKEN: token,
            env.PILOT_ID: str(pilot_id),
            env.SITE: self.name,
            env.PILOT_CORES: str(cfg.cores),
            env.PILOT_MEMORY: str(cfg.memory),
            env.PILOT_GPUS: str(cfg.gpus),
            env.PILOT_IDLE_TIMEOUT: str(cfg.idle_timeout),
            env.PILOT_WORKDIR: str(workdir),
        }
        if cfg.walltime:
            variables[env.PILOT_WALLTIME] = str(cfg.walltime)
        return PilotLaunch(
            pilot_id=pilot_id,
            command=self.pilot_command(),
            env=variables,
            workdir=workdir,
            log_path=base / f"{pilot_id}.log",
        )

    def pilot_script(self, launch: PilotLaunch, header: str = "") -> str:
        """A POSIX shell script that starts the pilot: ``header`` (e.g. ``#SBATCH`` lines),
        the operator's ``prologue`` option if the plugin has one, the ``FARSIDE_*``
        variables, then ``exec`` of the pilot command in its work directory."""
        lines = ["#!/bin/sh", *([header.rstrip("\n")] if header else [])]
        prologue = getattr(self.options, "prologue", None)
        if prologue:
            lines += ["# prologue from the site's configuration", prologue.rstrip("\n")]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(launch.env.items())]
        lines += [
            f"cd {shlex.quote(str(launch.workdir))}",
            "exec " + " ".join(shlex.quote(part) for part in launch.command),
        ]
        return "\n".join(lines) + "\n"

    def may_submit(self, now: float) -> bool:
        return now >= self.health.next_try

    def submitted_ok(self) -> None:
        self.health.failures = 0
        self.health.last_error = None

    def submission_failed(self, error: Exception, now: float) -> None:
        self.health.failures += 1
        self.health.last_error = str(error)
        delay = min(self.MAX_BACKOFF, 2.0**self.health.failures)
        self.health.next_try = now + delay
        log.warning(
            "site %s: pilot submission failed (%d in a row), next try in %.0fs: %s",
            self.name,
            self.health.failures,
            delay,
            error,
        )


def load_site(config: SiteConfig, gateway_url: str, state_dir: Path) -> Site:
    """Instantiate the plugin named by ``config.plugin`` (entry-point group ``farside.sites``)."""
    found = entry_points(group="farside.sites", name=config.plugin)
    if not found:
        known = sorted(ep.name for ep in entry_points(group="farside.sites"))
        raise ConfigurationError(
            f"site {config.name!r}: unknown plugin {config.plugin!r}; installed: {known}"
        )
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, Site)):
        raise ConfigurationError(f"plugin {config.plugin!r} is not a farside Site subclass")
    site: Site = cls(config=config, gateway_url=gateway_url, state_dir=state_dir)
    return site
