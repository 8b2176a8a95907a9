"""The test Kubernetes cluster for the ``kubernetes`` suite, and a small client for it.

``kubernetes_cluster`` (session scope) runs ``bash scripts/kubernetes.sh``: a real kube-apiserver,
controller-manager and scheduler built from Debian's source package, with the project's
process-based node agent (pods are host processes; there is no container runtime). The
script is idempotent, so a running cluster is reused. ``FARSIDE_TEST_KUBECONFIG`` points
at another cluster's kubeconfig instead (its nodes must run pods on this host).
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.harness import run_script

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG_ENV = "FARSIDE_TEST_KUBECONFIG"
BUILD_TIMEOUT = 3600  # a cold start builds Kubernetes: ~10 min on 2 cores, more when busy


class Cluster:
    """Just enough of the Kubernetes API for assertions, from the kubeconfig's credentials."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.http = httpx.Client(
            base_url=cluster["server"],
            headers={"Authorization": f"Bearer {user['token']}"},
            verify=ssl.create_default_context(cadata=ca),
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    def pods(self, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
        response = self.http.get(
            f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        response = self.http.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        pod: dict[str, Any] = response.json()
        return pod

    def logs(self, name: str, tail: int | None = None, namespace: str = "default") -> str:
        """A pod's output through the API server's pods/log (the node agent serves it)."""
        params = {} if tail is None else {"tailLines": tail}
        response = self.http.get(f"/api/v1/namespaces/{namespace}/pods/{name}/log", params=params)
        response.raise_for_status()
        return response.text

    def delete_pod(self, name: str, grace: int | None = None, namespace: str = "default") -> None:
        body = {} if grace is None else {"gracePeriodSeconds": grace}
        response = self.http.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", json=body
        )
        if response.status_code != 404:
            response.raise_for_status()


def start_cluster(*command: str) -> str:
    """Run scripts/kubernetes.sh (``command``: e.g. ``image-node``); returns the kubeconfig."""
    return run_script(
        "kubernetes.sh",
        *command,
        timeout=BUILD_TIMEOUT,
        fails="could not start the test cluster; run it by hand to see why",
    )


@pytest.fixture(scope="session")
def kubernetes_cluster() -> Iterator[Cluster]:
    kubeconfig = os.environ.get(KUBECONFIG_ENV) or start_cluster()
    if not Path(kubeconfig).is_file():
        pytest.fail(f"no kubeconfig at {kubeconfig!r} (from {KUBECONFIG_ENV} or the script)")
    client = Cluster(kubeconfig)
    yield client
    client.close()
