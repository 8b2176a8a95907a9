"""The kubernetes site's pod manifest and status mapping, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from farside_gateway.config import SiteConfig
from farside_gateway.sites.base import BatchState, load_site
from farside_gateway.sites.kubernetes import KubernetesSite, label_value, pod_status
from farside_protocol import ConfigurationError

GiB = 1024**3


def _site(tmp_path: Path, **settings: Any) -> KubernetesSite:
    config = SiteConfig.model_validate(
        {"name": "K8s_GPU", "plugin": "kubernetes", "memory": "4 GiB", **settings}
    )
    site = load_site(config, "http://gw:8765", tmp_path)
    assert isinstance(site, KubernetesSite)
    return site


def _pod(site: KubernetesSite, pilot_id: int = 7) -> dict[str, Any]:
    return site.pod_manifest(site.launch_for(pilot_id, "secret-token"))


def test_pod_runs_the_pilot_with_its_environment_and_batch_id(tmp_path: Path) -> None:
    site = _site(tmp_path, cores=2, options={"env": {"FARSIDE_PILOT_LOG_LEVEL": "DEBUG"}})
    pod = _pod(site)
    assert pod["metadata"]["generateName"] == "farside-k8s-gpu-7-"
    assert pod["metadata"]["namespace"] == "default"
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "farside",
        "farside.site": "K8s_GPU",
        "farside.pilot": "7",
    }
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 30
    (container,) = spec["containers"]
    assert container["command"] == site.pilot_command()
    values = {e["name"]: e.get("value") for e in container["env"]}
    assert values["FARSIDE_PILOT_TOKEN"] == "secret-token"
    assert values["FARSIDE_GATEWAY_URL"] == "http://gw:8765"
    assert values["FARSIDE_PILOT_ID"] == "7"
    assert values["FARSIDE_SITE"] == "K8s_GPU"
    assert values["FARSIDE_PILOT_CORES"] == "2"
    assert values["FARSIDE_PILOT_LOG_LEVEL"] == "DEBUG"
    assert values["FARSIDE_PILOT_WORKDIR"] == container["workingDir"]
    (batch_id,) = [e for e in container["env"] if e["name"] == "FARSIDE_PILOT_BATCH_ID"]
    assert batch_id == {
        "name": "FARSIDE_PILOT_BATCH_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }


def test_resources_follow_the_slot_and_overrides(tmp_path: Path) -> None:
    site = _site(tmp_path, cores=3, gpus=2)
    resources = _pod(site)["spec"]["containers"][0]["resources"]
    slot = {"cpu": "3", "memory": str(4 * GiB), "nvidia.com/gpu": "2"}
    assert resources == {"requests": slot, "limits": slot}

    site = _site(
        tmp_path,
        gpus=1,
        options={
            "gpu_resource": "amd.com/gpu",
            "requests": {"memory": "3Gi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": ""},
        },
    )
    resources = _pod(site)["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {
        "cpu": "1",
        "memory": "3Gi",
        "amd.com/gpu": "1",
        "ephemeral-storage": "1Gi",
    }
    assert resources["limits"] == {"memory": str(4 * GiB), "amd.com/gpu": "1"}


def test_scheduling_and_operator_options(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        walltime="1h",
        options={
            "namespace": "batch",
            "image": "registry.example/farside:1.0",
            "image_pull_policy": "IfNotPresent",
            "command": ["farside-pilot"],
            "workdir": "/scratch",
            "service_account": "pilots",
            "node_selector": {"pool": "gpu"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "spot", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 60},
            ],
            "labels": {"team": "physics", "farside.site": "spoofed"},
            "annotations": {"owner": "ops"},
            "grace_period": 5,
        },
    )
    pod = _pod(site)
    meta, spec = pod["metadata"], pod["spec"]
    (container,) = spec["containers"]
    assert meta["namespace"] == "batch"
    assert meta["labels"]["team"] == "physics"
    assert meta["labels"]["farside.site"] == "K8s_GPU"  # farside's own labels win
    assert meta["annotations"] == {"owner": "ops"}
    assert container["image"] == "registry.example/farside:1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["farside-pilot"]
    assert container["workingDir"] == "/scratch"
    assert {"name": "FARSIDE_PILOT_WORKDIR", "value": "/scratch"} in container["env"]
    assert spec["serviceAccountName"] == "pilots"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "spot",
            "operator": "Equal",
            "value": "yes",
            "effect": "NoExecute",
            "tolerationSeconds": 60,
        },
    ]
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["terminationGracePeriodSeconds"] == 5


def test_unknown_option_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"options\.nodeselector"):
        _site(tmp_path, options={"nodeselector": {"a": "b"}})


def test_label_values_are_valid() -> None:
    assert label_value("site_") == "site"
    assert len(label_value("a" * 64)) == 63


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        ({"phase": "Pending"}, BatchState.QUEUED, None),
        ({"phase": "Running"}, BatchState.RUNNING, None),
        ({"phase": "Unknown"}, BatchState.RUNNING, None),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
                ],
            },
            BatchState.GONE,
            "Failed: OOMKilled, exit code 137",
        ),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
            BatchState.GONE,
            "Failed: Evicted (low on memory)",
        ),
        (
            {
                "phase": "Succeeded",
                "containerStatuses": [
                    {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}
                ],
            },
            BatchState.GONE,
            "Succeeded: Completed, exit code 0",
        ),
    ],
)
def test_pod_phase_maps_to_batch_state(
    status: dict[str, Any], state: BatchState, reason: str | None
) -> None:
    observed = pod_status({"metadata": {"name": "p"}, "status": status})
    assert (observed.state, observed.reason) == (state, reason)


async def test_unreachable_api_is_a_configuration_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    site = _site(tmp_path, options={"kubeconfig": str(kubeconfig)})
    with pytest.raises(ConfigurationError, match="cannot reach the Kubernetes API"):
        await site.start()


def test_every_option_is_documented() -> None:
    from farside_gateway.sites.kubernetes import KubernetesOptions

    page = (Path(__file__).parents[2] / "docs" / "how-to" / "kubernetes.md").read_text()
    for name, option in KubernetesOptions.model_fields.items():
        assert f"| `{name}` |" in page, f"docs/how-to/kubernetes.md lacks option {name}"
        assert option.description
