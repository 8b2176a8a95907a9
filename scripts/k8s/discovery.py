"""Service discovery for the image runtime's pods (``image_runtime.py``), on the host network.

Every pod's IP is 127.0.0.1: for each Service of the pod's namespace (and
``default/kubernetes``) ``<NAME>_SERVICE_HOST`` is 127.0.0.1 and ``<NAME>_SERVICE_PORT`` the
port its pods listen on, and ``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc`` and
``<svc>.<ns>.svc.cluster.local`` resolve to 127.0.0.1 (/etc/hosts). Nothing can remap ports:
a Service is reached on its ``targetPort`` (a chart should give its Services the same port
and targetPort), and two pods listening on one port collide. The port is the ``targetPort``
(a named one looked up in the selected pods' ``ports``), not the Endpoints': the API server
refuses Endpoints with loopback addresses, so there are none. ``kubernetes`` is the API
server's real port, so in-cluster clients work with the mounted service-account token.
"""

from __future__ import annotations

from typing import Any

from runtime import HOST_IP, Call, Pod


async def discover(call: Call, pod: Pod, api_port: int) -> tuple[dict[str, str], list[str]]:
    """The Services' environment variables and host names, for a pod's namespace."""
    namespace = pod["metadata"]["namespace"]
    services = (await call("GET", "services"))["items"]
    links = pod["spec"].get("enableServiceLinks", True)
    env: dict[str, str] = {}
    hosts: list[str] = []
    pods: list[dict[str, Any]] | None = None
    for service in services:
        meta, spec = service["metadata"], service["spec"]
        name, where = meta["name"], meta["namespace"]
        if where == namespace:
            hosts.append(name)
        hosts += [f"{name}.{where}", f"{name}.{where}.svc", f"{name}.{where}.svc.cluster.local"]
        master = (where, name) == ("default", "kubernetes")
        if not (master or (links and where == namespace)):
            continue
        if spec.get("clusterIP") in (None, "", "None"):  # headless, ExternalName: none
            continue
        ports: list[tuple[str, str, int]] = []
        for port in spec.get("ports", []):
            target = port.get("targetPort", port["port"])
            if master:
                target = api_port
            elif isinstance(target, str):
                if pods is None:
                    pods = (await call("GET", "pods", namespace=namespace))["items"]
                target = _named_port(pods, spec.get("selector") or {}, target, port["port"])
            ports.append((port.get("name", ""), port.get("protocol", "TCP"), int(target)))
        env.update(_service_env(name, ports))
    return env, list(dict.fromkeys(hosts))


def _service_env(name: str, ports: list[tuple[str, str, int]]) -> dict[str, str]:
    """A kubelet's variables for one Service (docker links included), at 127.0.0.1."""
    if not ports:
        return {}
    prefix = name.upper().replace("-", "_")
    env = {f"{prefix}_SERVICE_HOST": HOST_IP, f"{prefix}_SERVICE_PORT": str(ports[0][2])}
    first = True
    for port_name, protocol, port in ports:
        if port_name:
            env[f"{prefix}_SERVICE_PORT_{port_name.upper().replace('-', '_')}"] = str(port)
        url = f"{protocol.lower()}://{HOST_IP}:{port}"
        if first:
            env[f"{prefix}_PORT"] = url
            first = False
        link = f"{prefix}_PORT_{port}_{protocol.upper()}"
        env[link] = url
        env[f"{link}_PROTO"] = protocol.lower()
        env[f"{link}_PORT"] = str(port)
        env[f"{link}_ADDR"] = HOST_IP
    return env


def _named_port(
    pods: list[dict[str, Any]], selector: dict[str, str], name: str, default: int
) -> int:
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            for container in pod["spec"]["containers"]:
                for port in container.get("ports", []):
                    if port.get("name") == name:
                        return int(port["containerPort"])
    return default
