"""The gateway's configuration: typed, validated on load, documented where it is declared.

An operator writes a TOML file; every field below may appear at its top level, and sites as
``[[sites]]`` tables. Tables that belong to one part of the gateway are declared beside it:
``[clusters]`` in :mod:`.clusters.config`, ``[oidc]`` and ``[hub]`` in :mod:`.auth.settings`.
``docs/reference/configuration.md`` is generated from these models (``python -m
farside_gateway.docgen``), so the help text here is the documentation.

.. code-block:: toml

    port = 8765
    database_url = "postgresql+psycopg://farside:secret@db/farside"

    [[sites]]
    name = "local"
    plugin = "local"
    cores = 1
    memory = "2 GiB"
    min_warm = 1
    max_pilots = 4
"""

from __future__ import annotations

import os
import platform
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from farside_protocol import ConfigurationError, SiteStatus
from farside_protocol.models import Memory, Walltime

from .auth.settings import HubConfig, OidcConfig
from .clusters.config import ClustersConfig

KiB = 1024
MiB = 1024**2
GiB = 1024**3


def _default_memory_per_core() -> int:
    """The machine's memory divided by its cores."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 2 * 1024**3
    return max(256 * MiB, total // max(1, os.cpu_count() or 1))


class SiteConfig(BaseModel):
    """One site: where pilots run and what one pilot's slot offers."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Unique name.")
    plugin: str = Field(
        "local", description="Site plugin, by its entry-point name in group `farside.sites`."
    )
    status: SiteStatus = Field(
        SiteStatus.ONLINE,
        description="`online` takes new work; `draining` and `offline` take none and start no "
        "pilots (jobs already on a pilot run to the end).",
    )
    cores: int = Field(1, ge=1, le=4096, description="Cores of one pilot's slot.")
    memory: Memory = Field(
        default_factory=_default_memory_per_core,
        description="Memory of one pilot's slot (e.g. '4 GiB'); default: machine memory / cores.",
    )
    gpus: int = Field(0, ge=0, le=64, description="GPUs of one pilot's slot.")
    gpu_model: str | None = Field(
        None, max_length=64, description="Model of the slot's GPUs (e.g. 'A100'), matched exactly."
    )
    arch: str = Field(
        default_factory=platform.machine,
        max_length=32,
        description="CPU architecture of the slot (e.g. 'x86_64'); default: the gateway's own.",
    )
    environments: list[str] = Field(
        default_factory=list,
        description="Environments (images, software profiles) the site offers by name; a job "
        "that names an environment runs only where it is offered.",
    )
    walltime: Walltime | None = Field(
        None, description="Walltime limit of a pilot's batch job (e.g. '2h'); none: unlimited."
    )
    min_warm: int = Field(0, ge=0, description="Pilots kept running even when there is no work.")
    max_pilots: int = Field(
        4,
        ge=0,
        description="Most pilots of this site at once, waiting and running (the maximum "
        "running, since a waiting pilot runs once the batch system starts it).",
    )
    max_queued: int | None = Field(
        None,
        ge=1,
        description="Most pilots waiting in the batch system's queue at once; default: max_pilots.",
    )
    idle_timeout: float = Field(
        60.0, gt=0, description="Seconds an idle pilot waits for work before it may leave."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Plugin-specific settings (see the plugin's docs)."
    )

    @model_validator(mode="after")
    def _warm_fits(self) -> SiteConfig:
        if self.min_warm > self.max_pilots:
            raise ValueError(
                f"site {self.name!r}: min_warm ({self.min_warm}) exceeds max_pilots "
                f"({self.max_pilots})"
            )
        return self

    @property
    def queue_limit(self) -> int:
        return self.max_pilots if self.max_queued is None else self.max_queued


class FairShareConfig(BaseModel):
    """Who goes first when a pilot asks for work: the user furthest below their share."""

    model_config = ConfigDict(extra="forbid")

    groups: dict[str, float] = Field(
        default_factory=dict,
        description="Share of each group (from the token's groups), e.g. {atlas = 3, cms = 1}; "
        "a group's share is split equally among its users with work. Users without a listed "
        "group share `default_share` each.",
    )
    default_share: float = Field(1.0, gt=0, description="Share of a user in no listed group.")
    max_running_jobs_per_user: int | None = Field(
        None, ge=1, description="Most jobs one user may have on pilots at once; none: no cap."
    )
    max_cores_per_user: int | None = Field(
        None, ge=1, description="Most cores one user's running jobs may hold at once."
    )

    @model_validator(mode="after")
    def _positive(self) -> FairShareConfig:
        bad = sorted(name for name, share in self.groups.items() if share <= 0)
        if bad:
            raise ValueError(f"group shares must be positive: {', '.join(bad)}")
        return self


class ScoutConfig(BaseModel):
    """Scouts: the first jobs of a large map run alone, and their measured memory and
    walltime set the rest's (unless the user fixed them)."""

    model_config = ConfigDict(extra="forbid")

    threshold: int = Field(
        20, ge=1, description="Maps of more than this many jobs send scouts first."
    )
    count: int = Field(3, ge=1, description="Scouts per map.")
    memory_percentile: float = Field(75, gt=0, le=100, description="Percentile of scouts' RSS.")
    memory_margin: float = Field(1.5, ge=1, description="Factor on that percentile.")
    walltime_percentile: float = Field(
        95, gt=0, le=100, description="Percentile of scouts' wall time."
    )
    walltime_margin: float = Field(3.0, ge=1, description="Factor on that percentile.")
    min_memory: Memory = Field(128 * MiB, description="Never correct memory below this.")
    min_walltime: Walltime = Field(60, description="Never correct walltime below this.")


def _default_sites() -> list[SiteConfig]:
    """One `local` site: 1-core slots, one warm pilot, up to one pilot per core (at least 2)."""
    return [SiteConfig(name="local", min_warm=1, max_pilots=max(2, os.cpu_count() or 2))]


class GatewayConfig(BaseModel):
    """Settings of one gateway process."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    public_url: str | None = Field(
        None,
        description="URL pilots and clients use to reach the gateway; default http://host:port.",
    )
    state_dir: Path = Field(
        Path("farside-state"), description="Directory for the database, blobs and pilot logs."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default: SQLite (WAL) file in state_dir. PostgreSQL: "
        "`postgresql+psycopg://user:password@host/db`.",
    )
    blob_url: str | None = Field(
        None,
        description="fsspec URL of the blob store for large payloads and results; default: "
        "state_dir/blobs.",
    )
    inline_limit: int = Field(
        256 * KiB, ge=0, description="Payloads and results up to this size stay in the database."
    )
    event_result_limit: int = Field(
        64 * KiB,
        ge=0,
        description="Results up to this size ride inline on the event stream to clients.",
    )
    max_request_size: int = Field(
        64 * MiB, ge=1024, description="Largest request body accepted; larger ones get 413."
    )
    max_result_size: int = Field(
        2 * GiB,
        ge=1024,
        description="Largest result a pilot may upload (streamed to the blob store, so not "
        "bound by max_request_size): a job's return value, or an offloaded Dask graph's "
        "intermediate chunk.",
    )
    heartbeat_interval: float = Field(5.0, gt=0, description="Seconds between pilot heartbeats.")
    heartbeat_timeout: float = Field(
        30.0, gt=0, description="A lease whose pilot is silent this long is failed and retried."
    )
    max_poll: float = Field(
        30.0, gt=0, description="Longest long-poll the gateway holds for a pilot."
    )
    max_system_attempts: int = Field(
        5, ge=1, description="Retries after system errors (lost pilots) before a job fails."
    )
    max_resource_attempts: int = Field(
        3,
        ge=1,
        description="Retries with more memory or walltime after a job ran out of either.",
    )
    fair_share: FairShareConfig = Field(
        default_factory=FairShareConfig, description="Fair share between users."
    )
    scouts: ScoutConfig = Field(default_factory=ScoutConfig, description="Scouts of large maps.")
    clusters: ClustersConfig = Field(
        default_factory=ClustersConfig, description="Interactive Dask clusters."
    )
    reaper_interval: float = Field(1.0, gt=0, description="Seconds between lease sweeps.")
    provision_interval: float = Field(1.0, gt=0, description="Seconds between provisioner passes.")
    pilot_start_timeout: float = Field(
        120.0, gt=0, description="A submitted pilot that has not registered by then is given up."
    )
    sites: list[SiteConfig] = Field(default_factory=_default_sites, description="Sites to use.")
    oidc: OidcConfig = Field(
        default_factory=OidcConfig, description="OIDC access tokens (off unless issuer is set)."
    )
    hub: HubConfig = Field(
        default_factory=HubConfig, description="JupyterHub API tokens (off unless api_url is set)."
    )

    @model_validator(mode="after")
    def _unique_sites(self) -> GatewayConfig:
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir.resolve() / 'farside.db'}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or str((self.state_dir / "blobs").resolve())

    def site(self, name: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.name == name), None)


def load_config(
    path: Path | None, defaults: dict[str, Any] | None = None, **overrides: Any
) -> GatewayConfig:
    """Read a TOML file (optional) over ``defaults``, then apply ``overrides`` (None values are
    ignored); raise a readable ConfigurationError."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigurationError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}") from exc
    data = {**(defaults or {}), **data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        where = f" in {path}" if path else ""
        message = "invalid gateway configuration" + where + ":\n" + "\n".join(lines)
        raise ConfigurationError(message) from None
