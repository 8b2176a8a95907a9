"""The gateway's configuration: typed, validated on load, documented where it is declared.

An operator writes a TOML file; every field below may appear at its top level, and sites as
``[[sites]]`` tables. ``docs/reference/configuration.md`` is generated from these models
(``python -m farside_gateway.docgen``), so the help text here is the documentation.

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
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from farside_pilot.protocol import ConfigurationError
from farside_pilot.protocol.models import Memory, Walltime

KiB = 1024
MiB = 1024**2


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
    status: Literal["online", "draining", "offline"] = Field(
        "online",
        description="`online` takes new work; `draining` and `offline` take none and start no "
        "pilots (jobs already on a pilot run to the end).",
    )
    cores: int = Field(1, ge=1, le=4096, description="Cores of one pilot's slot.")
    memory: Memory = Field(
        default_factory=_default_memory_per_core,
        description="Memory of one pilot's slot (e.g. '4 GiB'); default: machine memory / cores.",
    )
    gpus: int = Field(0, ge=0, le=64, description="GPUs of one pilot's slot.")
    walltime: Walltime | None = Field(
        None, description="Walltime limit of a pilot's batch job (e.g. '2h'); none: unlimited."
    )
    min_warm: int = Field(0, ge=0, description="Pilots kept running even when there is no work.")
    max_pilots: int = Field(
        4, ge=0, description="Most pilots of this site at once (queued and running)."
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
    reaper_interval: float = Field(1.0, gt=0, description="Seconds between lease sweeps.")
    provision_interval: float = Field(1.0, gt=0, description="Seconds between provisioner passes.")
    pilot_start_timeout: float = Field(
        120.0, gt=0, description="A submitted pilot that has not registered by then is given up."
    )
    sites: list[SiteConfig] = Field(default_factory=_default_sites, description="Sites to use.")

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
