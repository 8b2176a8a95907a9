"""The ``[clusters]`` table of the gateway's configuration: interactive Dask clusters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class ClustersConfig(BaseModel):
    """Where schedulers listen, how long clusters live, and how much one user may hold.

    Each cluster's scheduler is a process beside the gateway. Workers (on pilots) and the
    user's client connect to it directly over TLS, so ``contact_host`` must be an address
    both can reach; the scheduler listens on ``listen_host``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Offer interactive Dask clusters.")
    listen_host: str = Field(
        "127.0.0.1", description="Interface schedulers listen on ('0.0.0.0': all)."
    )
    contact_host: str | None = Field(
        None,
        description="Address workers and clients use to reach schedulers (and dashboards); "
        "None: listen_host.",
    )
    dashboard: bool = Field(
        True,
        description="Serve each scheduler's Dask dashboard (bokeh), to its owner through the "
        "gateway at /clusters/{name}/status.",
    )
    dashboard_host: str = Field(
        "127.0.0.1",
        description="Interface the dashboards listen on. The gateway proxies them with the "
        "user's auth; keep them off other interfaces, which would serve them to anyone.",
    )
    proxy_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of the TLS proxy through which stock dask-gateway clients reach "
        "schedulers (gateway://host:port/name, routed by SNI); 0: any free port; None: "
        "none (farside's own client connects to schedulers directly).",
    )
    proxy_host: str = Field("127.0.0.1", description="Interface the dask-gateway proxy listens on.")
    idle_timeout: float = Field(
        1800.0, gt=0, description="Seconds without tasks after which a cluster stops itself."
    )
    client_timeout: float = Field(
        300.0,
        gt=0,
        description="A cluster whose client sent no heartbeat for this long stops once it has "
        "no tasks (the kernel that made it is gone).",
    )
    check_interval: float = Field(
        2.0, gt=0, description="Seconds between passes that reconcile workers with targets."
    )
    adopt_after: float = Field(
        15.0,
        gt=0,
        description="Replicas sharing a PostgreSQL database: a replica not seen for this "
        "many seconds is gone, and another adopts its clusters (their schedulers outlive it "
        "for `orphan_grace`).",
    )
    orphan_grace: float = Field(
        60.0,
        ge=0,
        description="Seconds a scheduler whose gateway replica is gone keeps running, waiting "
        "for another replica to adopt it (PostgreSQL only; a gateway on SQLite has no other "
        "replica, and its schedulers end with it).",
    )
    worker_death_timeout: float = Field(
        60.0, gt=0, description="Seconds a worker keeps trying to reach a lost scheduler."
    )
    max_clusters_per_user: int = Field(10, ge=1, description="Clusters one user may run at once.")
    max_cores_per_user: int | None = Field(
        None, ge=1, description="Worker cores (all clusters, all groups) one user may ask for."
    )
    max_worker_failures: int = Field(
        10,
        ge=1,
        description="Failed worker leases after which a group stops replacing its workers.",
    )
    encryption_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Passphrases that seal each cluster's TLS key in the database (the first "
        "seals, all open: put a new one first to rotate). Replicas sharing a database need "
        "the same list; empty: a random key per gateway process.",
        json_schema_extra={"doc_default": "`[]`"},
    )
    log_retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="Seconds a scheduler's log (state_dir/clusters/<name>.log) is kept after "
        "it was last written.",
    )
    spare_schedulers: int = Field(
        1,
        ge=0,
        le=8,
        description="Scheduler processes kept started (distributed imported) and waiting, so "
        "that a new cluster is ready in well under a second.",
    )

    @model_validator(mode="after")
    def _grace_outlasts_adoption(self) -> ClustersConfig:
        if 0 < self.orphan_grace <= self.adopt_after + self.check_interval:
            raise ValueError(
                f"clusters.orphan_grace ({self.orphan_grace:g}s) must outlast adopt_after + "
                f"check_interval ({self.adopt_after + self.check_interval:g}s), or a "
                "scheduler ends before another replica can adopt it (0: no waiting)"
            )
        return self
