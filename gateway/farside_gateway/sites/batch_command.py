"""The base of site plugins that drive a batch system through its command-line tools
(Slurm's ``sbatch``/``squeue``/``scancel``, HTCondor's ``condor_submit``/``condor_q``/...),
as dask-jobqueue's and dask-gateway's job-queue backends share one base.

What such plugins share is written here once:

* **commands**: :meth:`BatchCommandSite.run` runs one tool without blocking the event loop
  and kills it after ``command_timeout``. A tool that cannot start or does not answer is a
  :class:`SiteCommandError` that says which option points at the tools (:attr:`TOOLS`);
  any other exit status is the plugin's to read.
* **live bookkeeping**: the batch ids this gateway submitted, or was asked about, and has
  not seen end; :meth:`stop` ends them.
* **stop with grace**: ``cancel`` (SIGTERM: the pilot reports its jobs and says goodbye) to
  each live pilot, up to ``stop_grace`` seconds for them to leave, then
  :meth:`force_cancel` for the rest.
* **the pilot's batch script**: the built-in one (:meth:`Site.pilot_script`) or the
  operator's ``template``, read and checked once, at start.

A subclass implements, besides ``cancel(batch_id)`` as for any site:

``command(tool, *args)``
    The argument vector that runs ``tool`` (a path option, a prefix, a pool...).
``submit_job(launch)``
    Submit one pilot (its script from :meth:`render_script`, which may start with the
    plugin's :meth:`script_header`); return its batch id.
``query(batch_ids)``
    The :class:`BatchStatus` of each id the batch system still knows or remembers.
``force_cancel(batch_ids)``
    End these jobs outright, after the grace.

and lists the words its batch system uses for a job killed for its memory in
:attr:`Site.OUT_OF_MEMORY`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import shlex
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from farside_protocol import ConfigurationError

from .base import (
    BatchScriptOptions,
    BatchState,
    BatchStatus,
    CommandResult,
    PilotLaunch,
    Site,
    run_command,
)

log = logging.getLogger(__name__)

GONE = BatchStatus(BatchState.GONE)
#: how often stop() looks whether the pilots have left
STOP_POLL = 0.5


class SiteCommandError(RuntimeError):
    """A batch system's command failed, could not run or did not answer; the message is for
    operators and says what to check."""


@dataclass
class BatchCommandSite(Site, abc.ABC):
    """Base of command-driven batch sites; see the module docstring for the contract."""

    Options: ClassVar[type[BatchScriptOptions]] = BatchScriptOptions
    options: BatchScriptOptions = field(init=False)
    #: what a "cannot run" error advises, e.g. "set options.bin_dir to where the tools are"
    TOOLS: ClassVar[str] = "install the batch system's client tools on the gateway's host"
    # batch jobs of this gateway not seen ended, so that stop() can end them
    _live: set[str] = field(default_factory=set, init=False)
    _template: string.Template | None = field(default=None, init=False)

    # ------------------------------------------------------------ the subclass's part

    @abc.abstractmethod
    def command(self, tool: str, *args: str) -> list[str]: ...

    @abc.abstractmethod
    async def submit_job(self, launch: PilotLaunch) -> str: ...

    @abc.abstractmethod
    async def query(self, batch_ids: list[str]) -> dict[str, BatchStatus]: ...

    @abc.abstractmethod
    async def force_cancel(self, batch_ids: list[str]) -> None: ...

    # ------------------------------------------------------------ the Site contract

    async def start(self) -> None:
        template = self.options.template
        if template is not None:
            self._template = load_template(self.name, template)

    async def submit(self, launch: PilotLaunch) -> str:
        batch_id = await self.submit_job(launch)
        self._live.add(batch_id)
        return batch_id

    async def observe(self, batch_ids: list[str]) -> dict[str, BatchStatus]:
        states = await self.query(batch_ids)
        # a restarted gateway learns its pilots from what it is asked about
        self._live.update(batch_ids)
        for batch_id in batch_ids:
            if states.get(batch_id, GONE).state is BatchState.GONE:
                self._live.discard(batch_id)
        wanted = set(batch_ids)
        return {i: s for i, s in states.items() if i in wanted}

    async def stop(self) -> None:
        """Stop this gateway's pilots: SIGTERM (they report and say goodbye), up to
        ``stop_grace`` seconds to leave, then :meth:`force_cancel`."""
        ids = sorted(self._live)
        if not ids:
            return
        await asyncio.gather(*(self.cancel(i) for i in ids), return_exceptions=True)
        deadline = time.monotonic() + self.options.stop_grace
        left = ids
        while left and time.monotonic() < deadline:
            await asyncio.sleep(STOP_POLL)
            try:
                states = await self.observe(left)
            except Exception as exc:  # the batch system may answer on the next look
                log.warning("site %s: stopping pilots: %s", self.name, exc)
                continue
            left = [i for i in left if states.get(i, GONE).state is not BatchState.GONE]
        if left:
            await self.force_cancel(left)
            self._live.difference_update(left)  # all that can be done: not again

    # ------------------------------------------------------------ shared machinery

    async def run(self, tool: str, *args: str) -> CommandResult:
        """Run ``tool`` with ``args`` (through :meth:`command`); its exit status and output.
        Raises :class:`SiteCommandError` if it cannot start or does not answer in time."""
        argv = self.command(tool, *args)
        limit = self.options.command_timeout
        done = await run_command(argv, limit)
        if done.code == 127 and done.err.startswith("cannot run"):
            raise SiteCommandError(f"site {self.name!r}: {done.err}; {self.TOOLS}")
        if done.code == 124 and done.err.endswith(f"took longer than {limit:.0f}s"):
            raise SiteCommandError(
                f"site {self.name!r}: {tool} did not answer within {limit:.0f}s; is the batch "
                "system overloaded or down? (raise options.command_timeout if it is merely slow)"
            )
        return done

    def script_header(self, launch: PilotLaunch) -> str:
        """Lines right after the script's ``#!`` line (``$header`` in a template), e.g.
        ``#SBATCH`` lines; none by default."""
        return ""

    def render_script(self, launch: PilotLaunch) -> str:
        """The pilot's batch script: the operator's ``template`` if set (placeholders in
        docs/how-to/slurm.md), else the built-in :meth:`Site.pilot_script`; both with
        :meth:`script_header`."""
        header = self.script_header(launch)
        if self._template is None:
            return self.pilot_script(launch, header)
        command = " ".join(shlex.quote(part) for part in launch.command)
        return self._template.safe_substitute(
            header=header,
            prologue=self.options.prologue or "",
            env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(launch.env.items())),
            command=f"cd {shlex.quote(str(launch.workdir))}\nexec {command}",
            pilot_id=str(launch.pilot_id),
            site=self.name,
        )


def load_template(site: str, path: Path) -> string.Template:
    """An operator's batch script template, refused if it could never start a pilot."""
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
