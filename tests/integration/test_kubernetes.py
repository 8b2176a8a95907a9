"""Pilots as pods on a real Kubernetes API: the ``kubernetes`` site end to end.

The cluster is the one ``scripts/kubernetes.sh`` starts: a real kube-apiserver,
kube-controller-manager and kube-scheduler (built from Debian's source package) with etcd.
There is NO container runtime: pods bound to the node run as plain processes of this host
through the project's node agent (``scripts/k8s/node_agent.py``), which ignores images.
What is tested is everything between farside and the Kubernetes API: pod manifests,
labels, scheduling, phases, deletion with a grace period, and cleaning up finished pods.

Each test gets a site of its own (a unique name, so a unique ``farside.site`` label) and
its pods are deleted afterwards. Run with ``pytest -m kubernetes``.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

import farside
from support.harness import GatewayProcess, wait_until
from support.kubernetes import Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.integration, pytest.mark.slow]

MiB = 1024**2
NODE = "farside-node"


def selector(site: str) -> str:
    return f"app.kubernetes.io/managed-by=farside,farside.site={site}"


@pytest.fixture
def database_url() -> None:
    """SQLite only: the plugin, not the database, is under test here."""
    return None


class Sites:
    """Kubernetes site tables with unique names, and gateways for them; cleaned up after."""

    def __init__(self, kube: Cluster, make_gateway: Callable[..., GatewayProcess]) -> None:
        self.cluster = kube
        self.make_gateway = make_gateway
        self.names: list[str] = []
        self.gateways: list[GatewayProcess] = []

    def site(self, **settings: Any) -> dict[str, Any]:
        name = f"k8s-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        options = {
            "kubeconfig": self.cluster.kubeconfig,
            "grace_period": 5,
            "finished_pod_ttl": 1,
            **settings.pop("options", {}),
        }
        return {
            "name": name,
            "plugin": "kubernetes",
            "cores": 1,
            "memory": "256 MiB",
            "min_warm": 0,
            "max_pilots": 4,
            "idle_timeout": 60,
            "options": options,
            **settings,
        }

    def gateway(self, *sites: dict[str, Any]) -> farside.Gateway:
        gw = self.make_gateway(sites=list(sites))
        self.gateways.append(gw)
        client: farside.Gateway = gw.client()
        return client

    def cleanup(self) -> None:
        # the gateways first, or they would replace the pods deleted here
        for gw in self.gateways:
            gw.cleanup()
        for name in self.names:
            for pod in self.cluster.pods(selector(name)):
                self.cluster.delete_pod(pod["metadata"]["name"], grace=0)
        wait_until(lambda: not any(self.cluster.pods(selector(n)) for n in self.names), 30)


@pytest.fixture
def k8s(
    kubernetes_cluster: Cluster,
    make_gateway: Callable[..., GatewayProcess],
) -> Iterator[Sites]:
    sites = Sites(kubernetes_cluster, make_gateway)
    yield sites
    sites.cleanup()


def _pilot_env(site: str, pilot_id: int) -> dict[str, str]:
    """The environment of a pilot's process: pods are host processes on this cluster."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            environ = proc.environ()
            key = (environ.get("FARSIDE_SITE"), environ.get("FARSIDE_PILOT_ID"))
            if key == (site, str(pilot_id)):
                return dict(environ)
    raise AssertionError(f"no process of pilot {pilot_id} of site {site}")


def test_map_runs_on_pilot_pods(k8s: Sites) -> None:
    cluster = k8s.cluster
    site = k8s.site(max_pilots=3)
    client = k8s.gateway(site)

    @farside.task(gateway=client, memory="100 MB")
    def square(x: int) -> int:
        time.sleep(0.3)
        return x * x

    assert list(square.map(range(20))) == [x * x for x in range(20)]

    # a pilot submitted during the map may still be starting (its pod unscheduled or its
    # process not yet up): look once every live pilot of the site has registered
    def registered() -> list[Any]:
        pilots = [p for p in client.pilots() if p.site == site["name"]]
        return pilots if all(p.state == "running" for p in pilots) else []

    pilots = wait_until(registered, timeout=60)
    pods = {p["metadata"]["name"]: p for p in cluster.pods(selector(site["name"]))}
    assert 1 <= len(pilots) <= 3
    for pilot in pilots:
        pod = pods[pilot.batch_id]  # the batch id is the pod's name
        assert pod["metadata"]["labels"]["farside.pilot"] == str(pilot.id)
        assert pod["spec"]["nodeName"] == NODE
        # the pilot itself got it from the downward API (metadata.name)
        assert _pilot_env(site["name"], pilot.id)["FARSIDE_PILOT_BATCH_ID"] == pilot.batch_id
        # kubectl logs: the pilot's own output, through the API server
        output = cluster.logs(pilot.batch_id)
        assert f"registered as pilot {pilot.id} on site {site['name']}" in output
        assert cluster.logs(pilot.batch_id, tail=1).count("\n") == 1
    jobs = client.jobs(limit=20)
    assert len(jobs) == 20
    for job in jobs:
        (attempt,) = client.job(job.id).attempt_list
        assert attempt.batch_id in pods
        assert attempt.site == site["name"]
    client.close()


def test_pods_carry_the_slot_and_node_selector(k8s: Sites) -> None:
    cluster = k8s.cluster
    fits = k8s.site(
        cores=2,
        memory="300 MiB",
        min_warm=1,
        options={"node_selector": {"farside.dev/pool": "test"}, "labels": {"team": "qa"}},
    )
    nowhere = k8s.site(min_warm=1, options={"node_selector": {"farside.dev/pool": "nowhere"}})
    client = k8s.gateway(fits, nowhere)

    pilot = wait_until(
        lambda: next(
            (p for p in client.pilots() if p.site == fits["name"] and p.state == "running"),
            None,
        ),
        timeout=60,  # a pod scheduled, started by the node agent, and its pilot registered
    )
    pod = cluster.pod(pilot.batch_id)
    assert pod is not None
    slot = {"cpu": "2", "memory": str(300 * MiB)}
    assert pod["spec"]["containers"][0]["resources"] == {"requests": slot, "limits": slot}
    assert pod["spec"]["nodeSelector"] == {"farside.dev/pool": "test"}
    assert pod["spec"]["nodeName"] == NODE
    assert pod["metadata"]["labels"]["team"] == "qa"

    # no node has the label: the scheduler leaves the pod Pending, the pilot never starts
    def unschedulable() -> bool:
        pods = cluster.pods(selector(nowhere["name"]))
        conditions = pods[0]["status"].get("conditions", []) if pods else []
        return any(c.get("reason") == "Unschedulable" for c in conditions)

    wait_until(unschedulable)
    (waiting,) = [p for p in client.pilots() if p.site == nowhere["name"]]
    assert waiting.state == "submitted"
    client.close()


def test_deleted_pod_job_is_retried_as_a_system_error(k8s: Sites) -> None:
    cluster = k8s.cluster
    # a short pilot shutdown grace, so the deleted pod's pilot stops its job at once
    command = [sys.executable, "-m", "farside_pilot", "--shutdown-grace", "0.5"]
    site = k8s.site(min_warm=2, max_pilots=2, options={"command": command})
    client = k8s.gateway(site)

    @farside.task(gateway=client, memory="100 MB", max_attempts=1)
    def slow() -> str:
        time.sleep(4)
        return "survived"

    fut = slow.submit()
    job = wait_until(lambda: (j := client.job(fut.job_id)).state == "running" and j, timeout=60)
    pod_name = next(p.batch_id for p in client.pilots() if p.id == job.pilot_id)
    cluster.delete_pod(pod_name)  # as `kubectl delete pod`: SIGTERM, grace, SIGKILL
    assert fut.result(timeout=90) == "survived"

    detail = client.job(fut.job_id)
    first, second = detail.attempt_list
    assert first.batch_id == pod_name
    assert first.error_class == "system"
    assert second.state == "finished"
    assert second.batch_id != pod_name
    assert second.batch_id in {p["metadata"]["name"] for p in cluster.pods(selector(site["name"]))}
    assert detail.attempts == 2  # max_attempts=1: the system retry did not use it up
    wait_until(lambda: cluster.pod(pod_name) is None, timeout=30)
    client.close()


def test_idle_pilot_pods_go_away(k8s: Sites) -> None:
    cluster = k8s.cluster
    site = k8s.site(max_pilots=2, idle_timeout=2)
    client = k8s.gateway(site)

    @farside.task(gateway=client, memory="100 MB")
    def one(x: int) -> int:
        return x

    assert list(one.map(range(4))) == list(range(4))
    assert cluster.pods(selector(site["name"]))
    # idle pilots retire, their pods succeed, and the site deletes finished pods
    wait_until(lambda: not cluster.pods(selector(site["name"])), timeout=60)
    assert all(p.state not in ("submitted", "running") for p in client.pilots())
    client.close()


def test_missing_namespace_stops_the_gateway_with_advice(k8s: Sites) -> None:
    site = k8s.site(options={"namespace": "no-such-namespace"})
    with pytest.raises(RuntimeError, match="kubectl create namespace no-such-namespace"):
        k8s.gateway(site)
