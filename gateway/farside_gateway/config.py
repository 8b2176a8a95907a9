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
import platform
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from farside_protocol import ConfigurationError, SiteStatus
from farside_protocol.models import Memory, Walltime

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


_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class OidcConfig(BaseModel):
    """OIDC access tokens (e.g. from INDIGO IAM): users log in at the issuer with
    ``farside login`` and send its access token; the gateway checks the JWT's signature against the
    issuer's published keys, its issuer, audience and expiry, and takes the user's name and
    groups from its claims; opaque access tokens are checked by introspection at the issuer
    when ``introspection`` is on. Off unless ``issuer`` is set; farside's own tokens work
    either way. See ``docs/how-to/oidc.md``.
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str | None = Field(
        None,
        description="Issuer URL, exactly as in the tokens' `iss` claim; its discovery document "
        "is `<issuer>/.well-known/openid-configuration`. Unset: OIDC tokens are not accepted.",
    )
    audience: list[str] = Field(
        default_factory=list,
        description="Accepted `aud` values; a token must name at least one. Required with "
        "`issuer`, so that tokens the issuer made for other services are refused.",
    )
    username_claim: list[str] = Field(
        default_factory=lambda: ["preferred_username", "sub"],
        description="Claims that name the user, tried in order; the first present wins. "
        "Default: `preferred_username`, then `sub`.",
        json_schema_extra={"doc_default": '`["preferred_username", "sub"]`'},
    )
    groups_claim: str = Field(
        "groups",
        min_length=1,
        description="Claim with the user's groups (a list, or one space-separated string): "
        "fair-share groups, the first one `[fair_share] groups` lists counting. A leading `/` "
        "(IAM's `wlcg.groups`) is dropped.",
    )
    admin_groups: list[str] = Field(default_factory=list, description="Their members are admins.")
    allowed_groups: list[str] = Field(
        default_factory=list,
        description="If set, only members of at least one of these groups may use the gateway.",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256"],
        description=f"Signature algorithms accepted; any of {', '.join(_ASYMMETRIC)}.",
        json_schema_extra={"doc_default": '`["RS256", "ES256", "PS256"]`'},
    )
    leeway: float = Field(
        30.0, ge=0, le=300, description="Seconds of clock skew allowed on `exp`, `nbf`, `iat`."
    )
    jwks_cache_ttl: float = Field(
        3600.0,
        gt=0,
        description="Seconds the issuer's keys are kept; a token signed by a key not among "
        "them fetches them again at once (at most every `jwks_min_refresh` seconds).",
    )
    jwks_min_refresh: float = Field(
        10.0, ge=0, description="Least seconds between two fetches of the issuer's keys."
    )
    client_id: str | None = Field(
        None,
        description="Public client (device authorization grant) that `farside login` uses; "
        "advertised at `GET /api/v1/auth`.",
    )
    login_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "offline_access"],
        description="Scopes `farside login` asks for (`offline_access` brings a refresh token).",
        json_schema_extra={"doc_default": '`["openid", "profile", "offline_access"]`'},
    )
    login_params: dict[str, str] = Field(
        default_factory=dict,
        description="Extra parameters `farside login` sends with its device authorization "
        'request, e.g. `{audience = "farside"}` (IAM) or `{resource = "urn:farside"}` '
        "(RFC 8707), so that the token is made for this gateway's audience.",
    )
    browser_client_id: str | None = Field(
        None,
        description="Public client (authorization code flow with PKCE) through which browsers "
        "log in to the web monitor at `/monitor`; register `<public_url>/monitor/"
        "oauth_callback` as its redirect URI. Unset: the monitor's login takes pasted tokens "
        "only.",
    )
    introspection: bool = Field(
        False,
        description="Also accept opaque (non-JWT) access tokens, such as IAM may issue: the "
        "gateway asks the issuer's `introspection_endpoint` (RFC 7662, from its discovery "
        "document) as the client below. An active token must name `issuer` (if it names one) "
        "and one of `audience`, like a JWT; the user and groups come from the same claims.",
    )
    introspection_client_id: str | None = Field(
        None,
        description="The gateway's own confidential client at the issuer, for introspection "
        "(not the public `client_id` of `farside login`). Required with `introspection`.",
    )
    introspection_client_secret: SecretStr | None = Field(
        None,
        description="That client's secret (HTTP basic authentication at the introspection "
        "endpoint); keep this file readable by the gateway only. Required with "
        "`introspection`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        # a single value reads naturally in TOML (audience = "farside"); store it as a list
        if isinstance(data, dict):
            for key in ("audience", "username_claim", "admin_groups", "allowed_groups"):
                if isinstance(data.get(key), str):
                    data = {**data, key: [data[key]]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> OidcConfig:
        bad = sorted(set(self.algorithms) - set(_ASYMMETRIC))
        if bad or not self.algorithms:
            raise ValueError(
                f"oidc.algorithms: {', '.join(bad) or 'empty'} not allowed; use some of "
                f"{', '.join(_ASYMMETRIC)} (shared-secret and `none` signatures are refused)"
            )
        if not self.username_claim or not all(self.username_claim):
            raise ValueError("oidc.username_claim must name at least one claim")
        if self.introspection and not (
            self.issuer
            and self.introspection_client_id
            and self.introspection_client_secret
            and self.introspection_client_secret.get_secret_value()
        ):
            raise ValueError(
                "oidc.introspection needs oidc.issuer, and the gateway's own confidential "
                "client at the issuer: set oidc.introspection_client_id and "
                "oidc.introspection_client_secret (or set introspection = false)"
            )
        if self.issuer is None:
            return self
        scheme, _, rest = self.issuer.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] if rest else ""
        if scheme not in ("https", "http") or not host:
            raise ValueError(f"oidc.issuer {self.issuer!r} is not an http(s) URL")
        if scheme == "http" and host not in _LOOPBACK:
            raise ValueError(
                f"oidc.issuer {self.issuer!r} must use https (plain http only on loopback)"
            )
        if not self.audience or not all(self.audience):
            raise ValueError(
                "oidc.audience is required with oidc.issuer: name the audience the issuer "
                'puts in tokens for this gateway (e.g. audience = ["farside"])'
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.issuer is not None


class HubConfig(BaseModel):
    """JupyterHub API tokens: the gateway as a hub service (``/services/farside``). A token
    is accepted when the hub says it carries ``access:services!service=<service_name>``; the
    hub user's name is the farside user. Off unless ``api_url`` is set. See
    ``docs/how-to/jupyterhub.md``.
    """

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = Field(
        None,
        description="The hub's REST API, e.g. `http://127.0.0.1:8081/hub/api` (what the hub "
        "gives its services as `JUPYTERHUB_API_URL`). Unset: hub tokens are not accepted.",
    )
    service_name: str = Field(
        "farside",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The gateway's name in the hub's `services`; tokens need "
        "`access:services!service=<this>`.",
    )
    admin_groups: list[str] = Field(
        default_factory=list, description="Members of these hub groups are admins."
    )
    hub_admins_are_admins: bool = Field(False, description="Hub admins are gateway admins.")
    allowed_groups: list[str] = Field(
        default_factory=list,
        description="If set, only members of at least one of these hub groups may use the "
        "gateway with a hub token.",
    )
    cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds the hub's answer about a token is remembered (a token revoked at "
        "the hub still works this long).",
    )

    @model_validator(mode="after")
    def _url(self) -> HubConfig:
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"hub.api_url {self.api_url!r} is not an http(s) URL")
        return self

    @property
    def enabled(self) -> bool:
        return self.api_url is not None


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
