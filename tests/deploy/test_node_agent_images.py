"""The test cluster's image node: pods that run the container images scripts/images.sh built.

``scripts/kubernetes.sh image-node`` adds ``farside-image-node`` to the test cluster: the
project's node agent with ``--runtime buildah`` (``scripts/k8s/image_runtime.py``), which
runs each container inside its image with ``buildah run`` on the host network, with
volumes, the Services' variables and host names, and readiness probes. Here: the gateway
image serves from a config in a Secret and goes Ready on its health probe, the pilot image
runs to completion, a missing image fails the pod, a claim's data outlives its pod, and a
deleted pod's process and working container go away.

Needs root, buildah and the images ``localhost/farside/gateway`` and ``pilot`` (build them
with ``scripts/images.sh gateway pilot``); skipped otherwise. Run with ``pytest -m deploy``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from support.harness import free_port, wait_until
from support.kubernetes import KUBECONFIG_ENV, ROOT, Cluster

pytestmark = [pytest.mark.deploy, pytest.mark.slow]

IMAGE_NODE = "farside-image-node"
GATEWAY_IMAGE = "localhost/farside/gateway:0.1.0"
PILOT_IMAGE = "localhost/farside/pilot:0.1.0"
BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": os.environ.get("STORAGE_DRIVER", "vfs")}
# pods opt in to the image node: it is tainted, so the kubernetes suite's pilots never go there
ON_IMAGE_NODE = {
    "nodeSelector": {"farside.dev/runtime": "buildah"},
    "tolerations": [{"key": "farside.dev/runtime", "value": "buildah", "effect": "NoSchedule"}],
}


def _buildah(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args], capture_output=True, text=True, env=BUILDAH_ENV, timeout=60
    )


def _why_not() -> str:
    """Why this machine cannot run the image node ("" if it can)."""
    if os.geteuid() != 0:
        return "the image node needs root (buildah runs its containers as root)"
    if shutil.which("buildah") is None:
        return "the image node needs buildah (scripts/images.sh installs it)"
    for image in (GATEWAY_IMAGE, PILOT_IMAGE):
        if _buildah("inspect", "--type", "image", image).returncode != 0:
            return f"image {image} is not built: run scripts/images.sh gateway pilot"
    if os.environ.get(KUBECONFIG_ENV):
        return f"{KUBECONFIG_ENV} points at another cluster; the image node is the script's"
    return ""


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


class ImageNode:
    """A namespace of its own on the image node, and what is needed to look at its pods."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = cluster.http
        self.namespace = f"img-{uuid.uuid4().hex[:8]}"
        self.state = Path(cluster.kubeconfig).parent  # the script's $STATE

    def create(self, kind: str, manifest: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"/api/v1/namespaces/{self.namespace}/{kind}", json=manifest)
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created

    def pod(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": containers, "restartPolicy": "Never", **ON_IMAGE_NODE, **spec},
        }
        return self.create("pods", manifest)

    def get(self, name: str) -> dict[str, Any] | None:
        return self.cluster.pod(name, namespace=self.namespace)

    def phase(self, name: str, *phases: str) -> dict[str, Any] | None:
        pod = self.get(name)
        return pod if pod and pod.get("status", {}).get("phase") in phases else None

    def ready(self, name: str) -> bool:
        pod = self.get(name) or {}
        conditions = pod.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def log(self, pod: str, container: str) -> str:
        path = self.state / "image-pods" / f"{self.namespace}_{pod}" / f"{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def working_containers(self, uid: str) -> list[str]:
        listed = _buildah("containers", "--format", "{{.ContainerName}}").stdout.split()
        return [name for name in listed if uid in name]

    def failure_report(self) -> str:
        agent = self.state / "image-node-agent.log"
        lines = agent.read_text(errors="replace").splitlines()[-40:] if agent.exists() else []
        logs = sorted((self.state / "image-pods").glob(f"{self.namespace}_*/*.log"))
        parts = ["image node agent:", *lines]
        for path in logs:
            parts += [f"--- {path.parent.name}/{path.name}", path.read_text(errors="replace")]
        return "\n".join(parts)

    def cleanup(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.delete(f"/api/v1/namespaces/{self.namespace}")
        # the agent keeps a claim's directory after the claim (its data may be wanted again)
        for claim in (self.state / "volumes").glob(f"{self.namespace}_*"):
            shutil.rmtree(claim, ignore_errors=True)


@pytest.fixture(scope="module")
def image_node(request: pytest.FixtureRequest) -> Iterator[ImageNode]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    cluster: Cluster = request.getfixturevalue("kubernetes_cluster")  # only once it can run
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kubernetes.sh"), "image-node"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/kubernetes.sh image-node failed:\n{done.stderr[-3000:]}")
    node = ImageNode(cluster)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": node.namespace}}
    node.http.post("/api/v1/namespaces", json=namespace).raise_for_status()

    # the controller-manager makes the namespace's service account and its token; until
    # then the API server refuses pods there
    def account_ready() -> bool:
        response = node.http.get(f"/api/v1/namespaces/{node.namespace}/serviceaccounts/default")
        return response.status_code == 200 and bool(response.json().get("secrets"))

    wait_until(account_ready, timeout=60, interval=0.2)
    yield node
    node.cleanup()


def test_gateway_image_serves_goes_ready_and_stops(image_node: ImageNode) -> None:
    node = image_node
    both = "$(FARSIDE_TEST_WORD)@$(FARSIDE_GW_SERVICE_HOST)"
    port = free_port()
    node.create(
        "secrets",
        {
            "metadata": {"name": "gateway"},
            # the port is only in the file: a gateway answering on it read the mounted secret
            "stringData": {"gateway.toml": f"port = {port}\nsites = []\n", "token": "s3cret"},
        },
    )
    node.create("configmaps", {"metadata": {"name": "greeting"}, "data": {"word": "hello"}})
    node.create(
        "services",
        {
            "metadata": {"name": "farside-gw"},
            "spec": {
                "selector": {"app": "gateway"},
                "ports": [{"name": "http", "port": port, "targetPort": port}],
            },
        },
    )
    gateway = {
        "name": "gateway",
        "image": GATEWAY_IMAGE,  # no command or args: the image's ENTRYPOINT and CMD
        "env": [
            _ref("FARSIDE_TEST_TOKEN", "secretKeyRef", "gateway", "token"),
            _ref("FARSIDE_TEST_WORD", "configMapKeyRef", "greeting", "word"),
            # expanded from the one above and from the Service's variables
            {"name": "FARSIDE_TEST_BOTH", "value": both},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/api/v1/health", "port": port},
            "periodSeconds": 1,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/farside/gateway.toml", "subPath": "gateway.toml"},
            {"name": "state", "mountPath": "/var/lib/farside"},
        ],
    }
    volumes = [
        # 0400: readable only because the file belongs to the image's user (1000)
        {"name": "config", "secret": {"secretName": "gateway", "defaultMode": 0o400}},
        {"name": "state", "emptyDir": {}},
    ]
    pod = node.pod("gateway", [gateway], volumes=volumes, terminationGracePeriodSeconds=15)
    uid = pod["metadata"]["uid"]

    wait_until(lambda: node.ready("gateway"), timeout=90, interval=0.2)
    assert node.get("gateway")["spec"]["nodeName"] == IMAGE_NODE  # type: ignore[index]
    health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    # the gateway's own process: its environment came from the secret, the config map,
    # the Services (at 127.0.0.1, on the port the pods listen on) and the image
    proc = _main_process(uid)
    env = proc.environ()
    assert env["FARSIDE_TEST_TOKEN"] == "s3cret"
    assert env["FARSIDE_TEST_BOTH"] == "hello@127.0.0.1"
    assert env["FARSIDE_GW_SERVICE_PORT"] == str(port)
    assert env["FARSIDE_GW_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "16443"  # the API server's real port
    assert env["PATH"].startswith("/opt/farside/bin")  # the image's ENV
    assert proc.uids().real == 1000  # the image's USER
    assert node.working_containers(uid)

    node.cluster.delete_pod("gateway", namespace=node.namespace)
    wait_until(lambda: node.get("gateway") is None, timeout=30, interval=0.2)
    assert not _answers(port)
    assert not proc.is_running()
    assert node.working_containers(uid) == []
    # SIGTERM reached the gateway itself (buildah would have SIGKILLed it): it shut down
    assert "stopping pilots" in node.log("gateway", "gateway")


def _ref(name: str, kind: str, source: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {kind: {"name": source, "key": key}}}


def _main_process(uid: str) -> psutil.Process:
    """A pod's container's own first process: below ``buildah run``, buildah-chroot-exec."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if argv[:2] == ["buildah", "run"] and any(uid in arg for arg in argv):
            with contextlib.suppress(psutil.Error):
                found += [
                    child
                    for child in proc.children(recursive=True)
                    if (up := child.parent()) and up.cmdline()[:1] == ["buildah-chroot-exec"]
                ]
    (main,) = found
    return main


def test_pilot_image_runs_to_completion(image_node: ImageNode) -> None:
    node = image_node
    node.pod("pilot", [{"name": "pilot", "image": PILOT_IMAGE, "args": ["--version"]}])
    pod = wait_until(lambda: node.phase("pilot", "Succeeded", "Failed"), timeout=90, interval=0.2)
    assert pod["status"]["phase"] == "Succeeded", node.log("pilot", "pilot")
    assert "farside-pilot 0.1.0" in node.log("pilot", "pilot")
    uid = pod["metadata"]["uid"]
    wait_until(lambda: node.working_containers(uid) == [], timeout=10)


def test_missing_image_fails_the_pod(image_node: ImageNode) -> None:
    node = image_node
    node.pod("nowhere", [{"name": "main", "image": "localhost/farside/no-such-image:0"}])
    pod = wait_until(lambda: node.phase("nowhere", "Failed", "Succeeded"), timeout=60)
    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "ErrImageNeverPull"
    assert "scripts/images.sh" in pod["status"]["message"]


def test_claim_outlives_its_pods(image_node: ImageNode) -> None:
    node = image_node
    node.create(
        "persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    for name, script in (
        ("writer", "open('/data/note', 'w').write('kept')"),
        ("reader", "print('note:', open('/data/note').read())"),
    ):
        container = {
            "name": "main",
            "image": PILOT_IMAGE,
            "command": ["python", "-c", script],
            "volumeMounts": mounts,
        }
        node.pod(name, [container], volumes=volumes)
        pod = wait_until(lambda n=name: node.phase(n, "Succeeded", "Failed"), timeout=90)
        assert pod["status"]["phase"] == "Succeeded", node.log(name, "main")
        node.cluster.delete_pod(name, namespace=node.namespace)
    assert "note: kept" in node.log("reader", "main")
