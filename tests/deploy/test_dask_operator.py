"""Dask clusters on a Kubernetes site through dask-kubernetes' operator: ``new_cluster`` on a
site with ``dask_operator`` becomes a ``DaskCluster`` resource, which the real operator
(kopf, from the dask-kubernetes package, with its CRDs) runs as scheduler and worker pods of
the pilot image on the test cluster's image node; scale and close go through the resource."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from distributed import Client

import farside
from support.deploy import ON_IMAGE_NODE, Helm, require_images
from support.harness import GatewayProcess, farside_client, running_gateway, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.slow]


@pytest.fixture(scope="module")
def dask_operator(kube_helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The operator's CRDs in the cluster, and the operator itself running (kopf)."""
    crds = resources.files("dask_kubernetes").joinpath(
        "operator/deployment/helm/dask-kubernetes-operator/crds"
    )
    for crd in sorted(p.name for p in crds.iterdir() if p.name.endswith(".yaml")):
        # create, not apply: the schemas are too large for apply's annotation
        done = kube_helm.kubectl("create", "-f", str(crds.joinpath(crd)), check=False)
        assert done.returncode == 0 or "AlreadyExists" in done.stderr, done.stderr
    log = tmp_path_factory.mktemp("operator") / "kopf.log"
    # kopf's own command line, through a runner that resolves Services' names as the
    # cluster's DNS would (the test cluster has none; see operator_on_host.py)
    command = [sys.executable, str(Path(__file__).with_name("operator_on_host.py"))]
    command += ["run", "-m", "dask_kubernetes.operator.controller"]
    command += ["--all-namespaces", "--standalone"]
    with log.open("ab") as out:
        operator = subprocess.Popen(
            command, env=kube_helm.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: b"Initial authentication has finished" in log.read_bytes(), 60)
        yield log
    finally:
        operator.terminate()
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(10)


def _operator_log(log: Path) -> str:
    """The operator's own lines (not its HTTP requests), for a failure's message."""
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if "httpx" not in line)[-6000:]


def _scheduler_port_free() -> bool:
    # the image node's pods share this host's network, and the operator's schedulers all
    # listen on 8786: one test's scheduler must be gone before the next starts
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", 8786)) != 0


def _site(helm: Helm, namespace: str) -> dict[str, Any]:
    return {
        "name": "k8s",
        "plugin": "kubernetes",
        "cores": 1,
        "memory": "1 GiB",
        "min_warm": 0,
        "max_pilots": 0,
        "options": {
            "kubeconfig": helm.env["KUBECONFIG"],
            "namespace": namespace,
            "image": "localhost/farside/pilot:0.1.0",
            "image_pull_policy": "Never",
            "dask_operator": True,
            # the test node's pods are on this host's network; in a real cluster the
            # scheduler Service's DNS name is the default
            "dask_scheduler_host": "127.0.0.1",
            "node_selector": ON_IMAGE_NODE["nodeSelector"],
            "tolerations": ON_IMAGE_NODE["tolerations"],
        },
    }


def _resource(helm: Helm, namespace: str, name: str) -> dict[str, Any] | None:
    done = helm.kubectl("get", "daskcluster", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.fixture
def operator_gateway(
    kube_helm: Helm, dask_operator: Path, kube_namespace: str, tmp_path: Path
) -> Iterator[GatewayProcess]:
    """A gateway whose site ``k8s`` runs Dask clusters through the operator, in a fresh
    namespace, once the last test's scheduler has left port 8786."""
    require_images("pilot")
    wait_until(_scheduler_port_free, 60, 0.5)
    site = _site(kube_helm, kube_namespace)
    clusters = {"check_interval": 0.5, "spare_schedulers": 0, "encryption_keys": ["k"]}
    with running_gateway(tmp_path / "gw", sites=[site], clusters=clusters) as gateway:
        yield gateway


@pytest.fixture
def gw(operator_gateway: GatewayProcess) -> Iterator[farside.Gateway]:
    yield from farside_client(operator_gateway)


def _wait_gone(helm: Helm, namespace: str, name: str, within: float, what: str, log: Path) -> None:
    """Wait until the cluster's DaskCluster is gone; else fail with ``what``, the resource
    left and the operator's log."""
    try:
        wait_until(lambda: _resource(helm, namespace, name) is None, within, 0.5)
    except AssertionError:
        left = _resource(helm, namespace, name) or {}
        raise AssertionError(f"{what}: {left.get('metadata')}\n" + _operator_log(log)) from None


@pytest.mark.timeout(600)
# the pilot image carries distributed but not numpy and pandas, which this client has
@pytest.mark.filterwarnings("ignore::distributed.versions.VersionMismatchWarning")
def test_a_cluster_on_an_operator_site_is_a_daskcluster(
    kube_helm: Helm,
    dask_operator: Path,
    kube_namespace: str,
    operator_gateway: GatewayProcess,
    gw: farside.Gateway,
) -> None:
    namespace = kube_namespace
    started = time.monotonic()
    cluster = gw.new_cluster(workers=1, cores=1, memory="512 MiB", site="k8s")
    name = cluster.name
    assert cluster.scheduler_address == "tcp://127.0.0.1:8786"
    resource = _resource(kube_helm, namespace, name)
    assert resource is not None
    assert resource["spec"]["worker"]["replicas"] == 1
    worker_spec = resource["spec"]["worker"]["spec"]
    assert worker_spec["containers"][0]["image"] == "localhost/farside/pilot:0.1.0"
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=120)
        first = time.monotonic() - started
        assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        # the pods' output, through the API server's pods/log (the node agent serves it)
        lines = cluster.logs()
        assert any(f"[{name}-scheduler" in ln and "Scheduler at" in ln for ln in lines)
        assert any("-worker-" in ln and "Start worker at" in ln for ln in lines), lines
        cluster.scale(2)  # through the gateway, onto the resource
        client.wait_for_workers(2, timeout=120)
        resource = _resource(kube_helm, namespace, name)
        assert resource is not None
        assert resource["spec"]["worker"]["replicas"] == 2
        assert client.submit(pow, 2, 5).result(timeout=60) == 32

        def workers_and_replicas() -> tuple[int, int]:
            left = _resource(kube_helm, namespace, name)
            replicas = left["spec"]["worker"]["replicas"] if left else -1
            return len(client.scheduler_info()["workers"]), replicas

        # farside's own adapt (in the client): idle, it names a worker to close; the
        # gateway lowers the replicas and the operator retires one (asking the
        # scheduler which, through the Service's name)
        adaptive = cluster.adapt(minimum=1, maximum=2)
        wait_until(lambda: workers_and_replicas() == (1, 1), 90, 0.5)
        adaptive.stop()
        # the gateway's adapt (dask-gateway's API): it asks the scheduler and scales
        dask_gateway_api = f"{operator_gateway.url}/dask-gateway/api/v1/clusters/{name}/adapt"
        auth = {"Authorization": f"Bearer {operator_gateway.user_token}"}
        bounds = {"minimum": 2, "maximum": 3}
        httpx.post(dask_gateway_api, json=bounds, headers=auth).raise_for_status()
        wait_until(lambda: workers_and_replicas() == (2, 2), 120, 0.5)
        bounds = {"minimum": 1, "maximum": 1}
        httpx.post(dask_gateway_api, json=bounds, headers=auth).raise_for_status()
        wait_until(lambda: workers_and_replicas() == (1, 1), 90, 0.5)
    with pytest.raises(farside.FarsideError, match="one worker group"):
        cluster.add_group("gpu", workers=1)
    cluster.close()
    _wait_gone(kube_helm, namespace, name, 60, "the DaskCluster outlived its close", dask_operator)
    (info,) = [c for c in gw.clusters(ended=True) if c.name == name]
    assert info.state == "stopped"
    assert info.reason == "closed by its owner"
    print(f"operator cluster: first worker after {first:.1f}s")


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::distributed.versions.VersionMismatchWarning")
def test_the_operators_idle_stop_ends_the_cluster(
    kube_helm: Helm, dask_operator: Path, kube_namespace: str, gw: farside.Gateway
) -> None:
    """The operator deletes a cluster idle past its idleTimeout (its own timer asks the
    scheduler); the gateway sees the resource gone and ends the cluster with the reason."""
    cluster = gw.new_cluster(workers=0, site="k8s", idle_timeout=10)
    name = cluster.name
    assert cluster.info.idle_timeout == 10
    # the operator may have stopped it already: the resource tells only while it lasts
    resource = _resource(kube_helm, kube_namespace, name)
    assert resource is None or resource["spec"]["idleTimeout"] == 10
    what = "the operator did not stop an idle cluster"
    _wait_gone(kube_helm, kube_namespace, name, 120, what, dask_operator)

    def ended() -> Any:
        return [c for c in gw.clusters(ended=True) if c.name == name and c.state == "stopped"]

    (info,) = wait_until(ended, 30, 0.5)
    assert info.reason.startswith("its DaskCluster is gone")


def test_the_operator_and_its_crds_come_from_the_package() -> None:
    # what the fixture applies must exist where dask-kubernetes keeps it
    crds = resources.files("dask_kubernetes").joinpath(
        "operator/deployment/helm/dask-kubernetes-operator/crds"
    )
    names = {p.name for p in crds.iterdir()}
    assert {"daskcluster.yaml", "daskworkergroup.yaml"} <= names
    assert os.path.exists(sys.executable)
