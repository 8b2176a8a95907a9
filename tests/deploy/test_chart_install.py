"""The Helm chart in the project's real Kubernetes: every object it renders accepted by the
API server (server-side dry run), then installed on the node whose agent runs each
container inside its image (buildah), so the chart runs the images scripts/images.sh built:
a client submits through the chart's gateway and gets results from pilot pods, and
``helm upgrade`` keeps the jobs, the results and the generated secrets."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.deploy import CHART, ON_IMAGE_NODE, Helm, documents, require_images
from support.harness import free_port, postgres_database, wait_until
from support.kubernetes import Cluster

pytestmark = [pytest.mark.deploy, pytest.mark.postgres]


def test_every_object_the_chart_renders_is_accepted_by_the_api_server(
    kube_helm: Helm, kube_namespace: str, tmp_path: Path
) -> None:
    namespace = kube_namespace
    values = {
        "hub": {
            "publicUrl": "https://hub.example.org",
            "oidc": {"issuer": "https://iam.example.org/", "clientSecret": "s"},
        },
        "gateway": {"replicas": 2, "blobs": {"accessMode": "ReadWriteMany"}},
    }
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    # --validate: rendered against this cluster's API versions (policy/v1beta1 on 1.20)
    rendered = kube_helm.helm(
        "template",
        "dry",
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(path),
        "--validate",
    ).stdout
    kinds = sorted({d["kind"] for d in documents(rendered)})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Pod",  # helm test's
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered)
    done = kube_helm.kubectl(
        "apply", "--dry-run=server", "--namespace", namespace, "-f", str(manifest)
    )
    accepted = [line for line in done.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(documents(rendered)), done.stdout


def _secret(helm: Helm, namespace: str, name: str) -> dict[str, str]:
    raw = json.loads(helm.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
    return {k: base64.b64decode(v).decode() for k, v in raw["data"].items()}


def _blob_volume(helm: Helm, namespace: str, claim: str, tmp_path: Path) -> str:
    """A PersistentVolume for the release's blob claim (the test cluster has no provisioner)."""
    name = f"{namespace}-blobs"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": str(tmp_path / "blobs-volume")},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    path = tmp_path / "pv.json"
    path.write_text(json.dumps(volume))
    helm.kubectl("apply", "-f", str(path))
    return name


def _token(database_url: str, user: str) -> str:
    command = [sys.executable, "-m", "farside_gateway", "token", "--user", user]
    done = subprocess.run(
        [*command, "--database-url", database_url],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def where_am_i(x: int) -> dict[str, Any]:
    import os
    import sys

    with open("/etc/os-release") as fh:
        release = fh.read()
    return {
        "x2": 2 * x,
        "prefix": sys.prefix,
        "bookworm": "bookworm" in release,
        "uid": os.getuid(),
        "pod": os.environ.get("FARSIDE_PILOT_BATCH_ID"),
    }


@pytest.mark.timeout(900)
def test_install_submit_and_upgrade_keep_the_data(
    kube_helm: Helm, image_cluster: Cluster, kube_namespace: str, tmp_path: Path
) -> None:
    import farside

    namespace = kube_namespace

    require_images("gateway", "pilot")
    database = postgres_database()
    database_url = next(database)
    release = "rel"
    port = free_port()  # pods share the host's network on the test node
    values = {
        **ON_IMAGE_NODE,
        "imageRegistry": "localhost/farside",
        "imagePullPolicy": "Never",
        "hub": {"enabled": False},
        "postgresql": {"enabled": False, "externalUrl": database_url},
        "gateway": {
            "service": {"port": port},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {}},
            "config": {"heartbeat_interval": 2, "heartbeat_timeout": 20},
        },
        "pilots": {
            "maxPilots": 2,
            "memory": "1 GiB",
            "idleTimeout": 120,
            "options": {
                "node_selector": ON_IMAGE_NODE["nodeSelector"],
                "tolerations": ON_IMAGE_NODE["tolerations"],
                "requests": {"cpu": "100m"},
                "finished_pod_ttl": 5,
            },
        },
    }
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    volume = _blob_volume(kube_helm, namespace, f"{release}-farside-blobs", tmp_path)
    try:
        kube_helm.helm(
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--values",
            str(values_file),
            "--wait",
            "--timeout",
            "5m",
        )
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/api/v1/health", timeout=10).json()["status"] == "ok"
        # the chart's own test: a pod of the release reaches the gateway through its Service
        tested = kube_helm.helm("test", release, "-n", namespace, "--timeout", "2m")
        assert "Phase:          Succeeded" in tested.stdout, tested.stdout
        secrets = _secret(kube_helm, namespace, f"{release}-farside-secrets")

        gw = farside.Gateway(url, token=_token(database_url, "alice"), set_as_default=False)
        try:
            before = gw.submit(where_am_i, 21)
            result = before.result(timeout=240)
            assert result["x2"] == 42
            # it ran in the pilot image, as its user, in a pod the gateway made
            assert result["prefix"] == "/opt/farside"
            assert result["bookworm"]
            assert result["uid"] == 1000
            pods = image_cluster.pods("farside.site=kubernetes", namespace=namespace)
            assert result["pod"] in [p["metadata"]["name"] for p in pods]
            pod = next(p for p in pods if p["metadata"]["name"] == result["pod"])
            assert pod["spec"]["containers"][0]["image"] == "localhost/farside/pilot:0.1.0"
            first_job = before.job_id

            # an interactive Dask cluster: its scheduler a process of the gateway pod (at
            # the pod's IP, --cluster-host), its worker a lease on a pilot pod, the client
            # here (the test node's pods have this host's address)
            from distributed import Client

            with (
                gw.new_cluster(workers=1, cores=1, memory="512 MiB") as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(1, timeout=120)
                assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        finally:
            gw.close()

        kube_helm.helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            namespace,
            "--reuse-values",
            "--set",
            "pilots.maxPilots=3",
            "--wait",
            "--timeout",
            "5m",
        )
        # the generated secrets are read back, not made again
        assert _secret(kube_helm, namespace, f"{release}-farside-secrets") == secrets
        gw = farside.Gateway(url, token=_token(database_url, "alice"), set_as_default=False)
        try:
            wait_until(lambda: _healthy(url), timeout=120, interval=0.5)
            job = gw.job(first_job)
            assert job.state == "finished"
            assert gw.future(first_job).result(timeout=30)["x2"] == 42
            assert gw.submit(where_am_i, 5).result(timeout=240)["x2"] == 10
        finally:
            gw.close()
    finally:
        kube_helm.helm("uninstall", release, "-n", namespace, "--wait", check=False)
        kube_helm.kubectl("delete", "pv", volume, "--wait=false", check=False)
        next(database, None)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
