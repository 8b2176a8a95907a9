"""The Helm chart, rendered and checked without a cluster: lint, the values schema (made
from the gateway's own settings models) refusing wrong values with their path, and the
gateway configuration it renders being one the gateway loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from farside_gateway.config import load_config
from support.deploy import CHART, Helm, documents, secret_text, tool_dir

pytestmark = pytest.mark.deploy

HUB = {
    "hub": {
        "publicUrl": "https://hub.example.org",
        "oidc": {
            "issuer": "https://iam.example.org/",
            "clientSecret": "hub-secret",
            "allowedGroups": ["physics"],
            "adminGroups": ["admins"],
        },
    }
}
NO_HUB: dict[str, Any] = {"hub": {"enabled": False}}


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(tool_dir())


def by_name(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in docs]}"
    return found[0]


def test_the_chart_lints_with_and_without_the_hub(helm: Helm, tmp_path: Path) -> None:
    for values in (NO_HUB, HUB):
        path = tmp_path / "values.json"
        path.write_text(json.dumps(values))
        done = helm.helm("lint", "--strict", str(CHART), "--values", str(path))
        assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # the gateway's own model: an unknown key, a bound, a site's field
        ({"gateway": {"config": {"heartbeat_intervall": 5}}}, "gateway.config"),
        ({"gateway": {"config": {"heartbeat_interval": -1}}}, "heartbeat_interval"),
        ({"gateway": {"config": {"sites": [{"name": "x", "cores": 0}]}}}, "cores"),
        # the Kubernetes site's options model
        ({"pilots": {"options": {"image_pull_policy": "Sometimes"}}}, "image_pull_policy"),
        # the chart's own values
        ({"gateway": {"replicas": 0}}, "gateway.replicas"),
        ({"imagePullPolicy": "Maybe"}, "imagePullPolicy"),
        # what the schema cannot say alone: the templates' checks
        ({"gateway": {"replicas": 2}}, "every replica must read the same blobs"),
        ({"postgresql": {"enabled": False}}, "postgresql.externalUrl"),
        ({"gateway": {"config": {"sites": [{"name": "kubernetes"}]}}}, "rename one"),
    ],
)
def test_wrong_values_fail_with_their_path(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    done = helm.template({**NO_HUB, **values}, check=False)
    assert done.returncode != 0, done.stdout[:500]
    assert message in done.stderr


def test_a_hub_needs_its_login(helm: Helm) -> None:
    done = helm.template({}, check=False)
    assert done.returncode != 0
    assert "set hub.oidc.issuer" in done.stderr


def test_the_rendered_configuration_is_one_the_gateway_loads(helm: Helm, tmp_path: Path) -> None:
    values = {
        **HUB,
        "gateway": {
            "replicas": 2,
            "config": {
                "blob_url": "s3://bucket/farside",
                "heartbeat_interval": 10,
                "heartbeat_timeout": 60,
                "fair_share": {"groups": {"physics": 2}},
                "sites": [{"name": "slurm", "plugin": "slurm", "cores": 8, "memory": "32 GiB"}],
            },
        },
        "pilots": {
            "cores": 2,
            "memory": "4 GiB",
            "walltime": "12h",
            "options": {"node_selector": {"pool": "pilots"}, "env": {"X": "1"}},
        },
    }
    docs = documents(helm.template(values).stdout)
    text = secret_text(by_name(docs, "Secret", "-gateway-config"), "gateway.toml")
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    config = load_config(path)  # the gateway's own loader: raises on anything it refuses

    assert config.public_url == "http://t-farside-gateway.farside-test.svc:8765"
    assert config.blob_url == "s3://bucket/farside"
    assert config.heartbeat_interval == 10
    assert config.fair_share.groups == {"physics": 2}
    assert [s.name for s in config.sites] == ["kubernetes", "slurm"]
    site = config.sites[0]
    assert (site.plugin, site.cores, site.memory, site.walltime) == (
        "kubernetes",
        2,
        4 * 1024**3,
        12 * 3600,
    )
    assert site.options["image"] == "farside/pilot:0.1.0"
    assert site.options["node_selector"] == {"pool": "pilots"}
    assert site.options["service_account"] == "t-farside-pilot"
    assert config.hub.api_url == "http://t-farside-hub.farside-test.svc:8081/hub/api"
    assert len(config.clusters.encryption_keys) == 1
    # the database URL and its password are not in the file but in the release's Secret
    assert config.database_url is None
    url = secret_text(by_name(docs, "Secret", "-secrets"), "database-url")
    assert url.startswith("postgresql+psycopg://farside:")
    assert url.endswith("@t-farside-postgresql.farside-test.svc:5432/farside")

    deployment = by_name(docs, "Deployment", "-gateway")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "farside/gateway:0.1.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    # a shared blob store: no claim
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and "blobs" in str(d)]


def test_the_hub_gets_profiles_with_their_images(helm: Helm) -> None:
    docs = documents(helm.template({**HUB, "imageRegistry": "registry.example.org/f"}).stdout)
    config_map = by_name(docs, "ConfigMap", "-hub")
    profiles = json.loads(config_map["data"]["profiles.json"])
    assert [(p["slug"], p["image"], p["gpus"]) for p in profiles] == [
        ("cpu", "registry.example.org/f/notebook-cpu:0.1.0", 0),
        ("ml", "registry.example.org/f/notebook-ml:0.1.0", 0),
        ("ml-gpu", "registry.example.org/f/notebook-gpu:0.1.0", 1),
    ]
    source = config_map["data"]["jupyterhub_config.py"]
    compile(source, "jupyterhub_config.py", "exec")  # the rendered Python is Python
    assert 'issuer="https://iam.example.org/"' in source
    assert 'allowed_groups=["physics"]' in source


def test_values_yaml_is_the_models_defaults() -> None:
    # values.yaml and the schema are generated; docgen --check (CI) keeps them current.
    # Here: the defaults in the file are valid against the schema made with them.
    import yaml

    from farside_gateway.docgen.helm_values import ChartValues

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert ChartValues.model_validate(values) == ChartValues()
