"""The Helm chart's values, as models: the source of ``charts/farside/values.yaml``,
``values.schema.json`` and ``docs/reference/helm-values.md`` (written by
:mod:`.helm_files`).

``gateway.config`` is the gateway's own :class:`~farside_gateway.config.GatewayConfig` and
``pilots.options`` the Kubernetes site's
:class:`~farside_gateway.sites.kubernetes.KubernetesOptions`: the schema Helm checks a
release against is generated from the same models the gateway loads, so a value the
gateway would refuse fails ``helm install`` instead, with the path of the wrong value.
Everything else is the chart's own (images, replicas, the database, the hub), modelled
here with its default and its explanation once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import GatewayConfig
from ..sites.kubernetes import KubernetesOptions

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class ValuesModel(BaseModel):
    """A group of values (a mapping in values.yaml); a key it does not name is refused."""

    model_config = ConfigDict(extra="forbid")


class Resources(ValuesModel):
    """Kubernetes resource requests and limits of a container."""

    requests: dict[str, str] = Field(
        default_factory=dict, description="What the scheduler reserves, e.g. `{cpu: 500m}`."
    )
    limits: dict[str, str] = Field(
        default_factory=dict, description="The most it may use, e.g. `{memory: 4Gi}`."
    )


class Service(ValuesModel):
    """How the component is exposed inside (and perhaps outside) the cluster."""

    type: ServiceType = Field("ClusterIP", description="Service type.")
    port: int = Field(8765, ge=1, le=65535, description="Service port.")


class Persistence(ValuesModel):
    """A PersistentVolumeClaim the component keeps its files on."""

    size: str = Field("10Gi", description="Requested size.")
    storageClass: str = Field("", description="StorageClass; empty: the cluster's default.")
    accessMode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce",
        description="`ReadWriteMany` for a claim that pods on several nodes mount (gateway "
        "replicas sharing blobs).",
    )


class Gateway(ValuesModel):
    """The workload gateway: a Deployment behind one Service."""

    replicas: int = Field(
        1,
        ge=1,
        description="Gateway replicas, all on one PostgreSQL database. More than one needs "
        "blobs every replica reads: `gateway.config.blob_url` (e.g. `s3://...`) or "
        "`gateway.blobs.accessMode: ReadWriteMany`.",
    )
    publicUrl: str = Field(
        "",
        description="URL users and pilots reach the gateway at (an ingress); empty: the "
        "Service's in-cluster URL, `http://<release>-farside-gateway.<namespace>.svc:<port>`.",
    )
    service: Service = Field(default_factory=Service, description="The gateway's Service.")
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests={"cpu": "500m", "memory": "1Gi"}, limits={"memory": "4Gi"}
        ),
        description="The gateway container's resources (its Dask schedulers run inside it).",
        json_schema_extra={"doc_default": "requests 500m CPU and 1 GiB, limit 4 GiB"},
    )
    blobs: Persistence = Field(
        default_factory=Persistence,
        description="Claim for the blob store (large payloads and results), unless "
        "`gateway.config.blob_url` puts it elsewhere.",
    )
    extraEnv: list[dict[str, Any]] = Field(
        default_factory=list, description="Extra container `env` entries (e.g. AWS_* for s3)."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The gateway's configuration, as in its TOML file. The chart sets `host`, "
        "`port`, `state_dir`, `public_url`, `blob_url` (on the blobs claim), "
        "`clusters.encryption_keys` (generated), `clusters.listen_host` and `hub.api_url` "
        "(yours win), and puts its Kubernetes site first in `sites` (yours follow). The "
        "database URL reaches the gateway from a Secret as FARSIDE_DATABASE_URL.",
        json_schema_extra={"schema_of": "GatewayConfig"},
    )


class Pilots(ValuesModel):
    """The Kubernetes site whose pilots are pods in the release's namespace."""

    enabled: bool = Field(True, description="Add the site; off: only `gateway.config.sites`.")
    site: str = Field("kubernetes", description="The site's name (jobs choose sites by name).")
    cores: int = Field(1, ge=1, description="Cores of one pilot pod's slot.")
    memory: str = Field("2 GiB", description="Memory of one pilot pod's slot.")
    gpus: int = Field(0, ge=0, description="GPUs of one pilot pod's slot (`nvidia.com/gpu`).")
    walltime: str = Field("", description="Longest life of a pilot pod (e.g. `12h`); empty: none.")
    minWarm: int = Field(0, ge=0, description="Pilot pods kept running without work.")
    maxPilots: int = Field(10, ge=0, description="Most pilot pods at once.")
    idleTimeout: float = Field(300, gt=0, description="Seconds an idle pilot pod waits.")
    environments: list[str] = Field(
        default_factory=list, description="Environments (software profiles) its image offers."
    )
    image: str = Field("", description="Pilot image; empty: `<imageRegistry>/pilot:<tag>`.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="More options of the Kubernetes site (docs/how-to/kubernetes.md), e.g. "
        "`node_selector`, `tolerations`, `env`; the chart sets `namespace`, `image`, "
        "`command` and `service_account`.",
        json_schema_extra={"schema_of": "KubernetesOptions"},
    )


class Postgresql(ValuesModel):
    """The database of the pool: bundled, or one you run."""

    enabled: bool = Field(True, description="Run PostgreSQL as a StatefulSet of this release.")
    image: str = Field("docker.io/library/postgres:16", description="Bundled server's image.")
    persistence: Persistence = Field(
        default_factory=Persistence, description="The bundled server's data claim."
    )
    resources: Resources = Field(
        default_factory=Resources, description="The bundled server's resources."
    )
    externalUrl: str = Field(
        "",
        description="With `enabled: false`: SQLAlchemy URL of your database, e.g. "
        "`postgresql+psycopg://farside:PASSWORD@db.example.org/farside` (kept in a Secret).",
    )
    existingSecret: str = Field(
        "",
        description="With `enabled: false`: a Secret whose key `database-url` holds the URL "
        "instead.",
    )


class Profile(ValuesModel):
    """One choice on the hub's spawn page."""

    slug: str = Field(pattern=r"^[a-z0-9-]+$", description="Name in forms and URLs.")
    displayName: str = Field(description="What the spawn page shows.")
    description: str = Field("", description="A line under it.")
    image: str = Field(description="Notebook image name under `imageRegistry`, or a full name.")
    env: str | None = Field(None, description="farside environment jobs ask for by default.")
    gpus: int = Field(0, ge=0, description="GPUs per job by default (and for the server).")


def _default_profiles() -> list[Profile]:
    """CPU, ML and GPU, on the notebook-cpu, notebook-ml and notebook-gpu images."""
    return [
        Profile(
            slug="cpu",
            displayName="CPU",
            description="Jobs run on CPU slots.",
            image="notebook-cpu",
        ),
        Profile(
            slug="ml",
            displayName="ML",
            description="Optuna, pyhf, JAX; jobs ask for the `ml` environment.",
            image="notebook-ml",
            env="ml",
        ),
        Profile(
            slug="ml-gpu",
            displayName="ML + GPU",
            description="A GPU for the server; jobs get one GPU each.",
            image="notebook-gpu",
            env="ml",
            gpus=1,
        ),
    ]


class HubOidc(ValuesModel):
    """Where users log in (INDIGO IAM or any OIDC provider)."""

    issuer: str = Field("", description="Issuer URL; required with `hub.enabled`.")
    clientId: str = Field("farside-hub", description="The hub's confidential client.")
    clientSecret: str = Field("", description="Its secret (or `existingSecret`).")
    existingSecret: str = Field(
        "", description="A Secret whose key `client-secret` holds the client secret."
    )
    audience: str = Field("farside", description="`aud` of the tokens the gateway accepts.")
    allowedGroups: list[str] = Field(
        default_factory=list, description="Groups that may log in; empty: anyone."
    )
    adminGroups: list[str] = Field(default_factory=list, description="Hub and gateway admins.")


class Hub(ValuesModel):
    """JupyterHub with KubeSpawner: users' notebook servers as pods, the gateway a service."""

    enabled: bool = Field(True, description="Run JupyterHub.")
    image: str = Field("", description="Hub image; empty: `<imageRegistry>/hub:<tag>`.")
    proxyImage: str = Field(
        "quay.io/jupyterhub/configurable-http-proxy:4.6.3",
        description="configurable-http-proxy, which routes users to their servers.",
    )
    service: Service = Field(
        default_factory=lambda: Service(type="LoadBalancer", port=80),
        description="The proxy's public Service (what users open).",
        json_schema_extra={"doc_default": "LoadBalancer on port 80"},
    )
    publicUrl: str = Field(
        "", description="The hub's public URL (for the OIDC callback); required with OIDC."
    )
    oidc: HubOidc = Field(default_factory=HubOidc, description="User login.")
    profiles: list[Profile] = Field(
        default_factory=_default_profiles, description="Spawn page choices, the first default."
    )
    resources: Resources = Field(default_factory=Resources, description="The hub's resources.")


class NetworkPolicy(ValuesModel):
    """Who may talk to whom inside the release."""

    enabled: bool = Field(
        True,
        description="Only pilots, notebook servers, the hub and `allowedFrom` reach the "
        "gateway; only the gateway reaches PostgreSQL.",
    )
    allowedFrom: list[dict[str, Any]] = Field(
        default_factory=list,
        description="More `from` peers for the gateway (e.g. an ingress controller's namespace).",
    )


class ChartValues(ValuesModel):
    """Values of the `farside` Helm chart."""

    imageRegistry: str = Field(
        "farside", description="Prefix of farside's images: `<imageRegistry>/<name>:<tag>`."
    )
    imageTag: str = Field("", description="Tag of farside's images; empty: the chart's version.")
    imagePullPolicy: PullPolicy = Field("IfNotPresent", description="For every container.")
    imagePullSecrets: list[dict[str, str]] = Field(
        default_factory=list, description="`[{name: ...}]` for a private registry."
    )
    nodeSelector: dict[str, str] = Field(
        default_factory=dict, description="For every pod the chart runs (not pilots, not users')."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="For every pod the chart runs (not pilots, not users')."
    )
    gateway: Gateway = Field(default_factory=Gateway, description="The workload gateway.")
    pilots: Pilots = Field(default_factory=Pilots, description="The in-cluster site.")
    postgresql: Postgresql = Field(default_factory=Postgresql, description="The database.")
    hub: Hub = Field(default_factory=Hub, description="JupyterHub.")
    networkPolicy: NetworkPolicy = Field(
        default_factory=NetworkPolicy, description="NetworkPolicies."
    )


#: what a field's ``schema_of`` marker names: its values are checked against this model
EMBEDDED: dict[str, type[BaseModel]] = {
    "GatewayConfig": GatewayConfig,
    "KubernetesOptions": KubernetesOptions,
}
