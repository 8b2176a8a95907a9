"""The deploy suite's cluster fixtures: the test Kubernetes with its image node, and helm
and kubectl pointed at it (shared by the chart's install test and the Dask operator's)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from tests.deploy_support import ROOT, Helm, tool_dir
from tests.kubernetes_support import Cluster


@pytest.fixture(scope="session")
def image_cluster() -> Iterator[Cluster]:
    """The test cluster with its image node (scripts/kubernetes.sh image-node)."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kubernetes.sh"), "image-node"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/kubernetes.sh image-node failed:\n{done.stderr[-3000:]}")
    cluster = Cluster(done.stdout.strip().splitlines()[-1])
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def kube_helm(image_cluster: Cluster) -> Helm:
    return Helm(tool_dir(), image_cluster.kubeconfig)
