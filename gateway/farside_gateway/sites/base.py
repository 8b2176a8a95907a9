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
    Return the :class:`BatchState` of each id; ids the batch system no longer knows may be
    left out (they count as ``GONE``). A pilot whose batch job is gone without having said
    goodbye is *lost*, and its jobs are retried at once.
``cancel(batch_id)``
    Stop that pilot (it gets SIGTERM or the batch system's equivalent first).

and may override ``start()`` and ``stop()``. Plugins are found by entry-point name in the
group ``farside.sites`` (``plugin = "local"`` in the site's configuration).
"""

from __future__ import annotations

import abc
import enum
import logging
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from farside_pilot.protocol import ConfigurationError, env

from ..config import SiteConfig

log = logging.getLogger(__name__)


class BatchState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    GONE = "gone"


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

    UNHEALTHY_AFTER = 5
    MAX_BACKOFF = 300.0

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------ plugin interface

    @abc.abstractmethod
    async def submit(self, launch: PilotLaunch) -> str: ...

    @abc.abstractmethod
    async def observe(self, batch_ids: list[str]) -> dict[str, BatchState]: ...

    @abc.abstractmethod
    async def cancel(self, batch_id: str) -> None: ...

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (e.g. check the batch system's commands exist)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what the plugin holds; pilots of a batch system keep running."""

    # ------------------------------------------------------------ shared machinery

    def pilot_command(self) -> list[str]:
        return [sys.executable, "-m", "farside_pilot"]

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
            self.name, self.health.failures, delay, error,
        )  # fmt: skip


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
