"""Pod volumes for the image runtime: files on this host, bind-mounted into containers.

Each pod gets ``<pods-dir>/<pod uid>/<volume>``, written before its containers start and
removed when the pod is deleted; ``buildah run -v`` mounts them. Supported sources:

* ``secret``, ``configMap`` (``items``, ``defaultMode``, ``optional``), ``downwardAPI``
  and ``projected`` (secret, configMap, downwardAPI and ``serviceAccountToken`` sources,
  the token from the TokenRequest API): files, mounted read-only. They are written once,
  at the pod's start: a later change to the secret does not reach a running pod. In
  Kubernetes 1.20 the auto-mounted service-account token is a ``secret`` volume
  (``default-token-…``), so in-cluster clients work.
* ``emptyDir``: a directory (mode 0777, as a kubelet makes it; ``medium: Memory`` is a
  plain directory too).
* ``hostPath``: the host's own path (``DirectoryOrCreate``/``FileOrCreate`` create it).
* ``persistentVolumeClaim``: ``<claims-dir>/<namespace>_<claim>``, kept across pods, so
  data survives a pod's restart or a ``helm upgrade``. :class:`ClaimBinder` binds every
  pending claim to a ``hostPath`` PersistentVolume on that directory, pinned to this node:
  without a bound claim the scheduler would never place the pod.

Files belong to the containers' user (when the pod's containers agree on one), so that a
``defaultMode: 0400`` secret stays readable to a non-root container; ``fsGroup``, if set,
becomes their group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import kr8s
from runtime import Call, Objects, Pod, PodError, PodWaiting, field_value, get_or_none

log = logging.getLogger("node-agent")
DEFAULT_MODE = 0o644
READ_ONLY_KINDS = ("secret", "configMap", "downwardAPI", "projected")
BIND_EVERY = 2.0  # seconds between the claim binder's looks at pending claims


class Volumes:
    def __init__(self, call: Call, pods_dir: Path, claims_dir: Path) -> None:
        self.call = call
        self.pods_dir = pods_dir
        self.claims_dir = claims_dir

    async def prepare(
        self, pod: Pod, owner: tuple[int, int] | None, objects: Objects
    ) -> dict[str, tuple[Path, bool]]:
        """Write the pod's volumes: name -> (host path, always read-only)."""
        meta, spec = pod["metadata"], pod["spec"]
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        if fs_group is not None:
            owner = (owner[0] if owner else 0, int(fs_group))
        root = self.pods_dir / meta["uid"]
        shutil.rmtree(root, ignore_errors=True)  # a retried start writes everything anew
        root.mkdir(parents=True)
        paths: dict[str, tuple[Path, bool]] = {}
        for volume in spec.get("volumes", []):
            name = volume["name"]
            kind = next((k for k in volume if k != "name"), "")
            source = volume.get(kind) or {}
            target = root / name
            if kind in READ_ONLY_KINDS:
                files = await self.files(pod, kind, source, objects)
                mode = int(source.get("defaultMode", DEFAULT_MODE))
                _write_files(target, files, mode, owner)
                paths[name] = (target, True)
            elif kind == "emptyDir":
                target.mkdir()
                target.chmod(0o777)  # umask would take the group and others' write bits
                paths[name] = (target, False)
            elif kind == "hostPath":
                paths[name] = (_host_path(source), False)
            elif kind == "persistentVolumeClaim":
                paths[name] = (await self.claim(meta["namespace"], source), False)
            else:
                raise PodError("CreateContainerConfigError", f"volume {name}: {kind} unsupported")
        return paths

    async def files(
        self, pod: Pod, kind: str, source: dict[str, Any], objects: Objects
    ) -> dict[str, tuple[bytes, int | None]]:
        """A read-only volume's files: relative path -> (content, its own mode or None)."""
        if kind == "secret":
            return await self.keys(objects, "secrets", source.get("secretName", ""), source)
        if kind == "configMap":
            return await self.keys(objects, "configmaps", source.get("name", ""), source)
        if kind == "downwardAPI":
            return _downward(pod, source.get("items", []))
        files: dict[str, tuple[bytes, int | None]] = {}
        for part in source.get("sources", []):
            if "secret" in part:
                ref = part["secret"]
                files.update(await self.keys(objects, "secrets", ref.get("name", ""), ref))
            elif "configMap" in part:
                ref = part["configMap"]
                files.update(await self.keys(objects, "configmaps", ref.get("name", ""), ref))
            elif "downwardAPI" in part:
                files.update(_downward(pod, part["downwardAPI"].get("items", [])))
            elif "serviceAccountToken" in part:
                ref = part["serviceAccountToken"]
                files[ref["path"]] = (await self.token(pod, ref), None)
        return files

    async def keys(
        self, objects: Objects, kind: str, name: str, source: dict[str, Any]
    ) -> dict[str, tuple[bytes, int | None]]:
        optional = bool(source.get("optional"))
        data = await objects.data(kind, name, optional)
        items = source.get("items")
        if not items:
            return {key: (value, None) for key, value in data.items()}
        files: dict[str, tuple[bytes, int | None]] = {}
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise PodWaiting(
                    "CreateContainerConfigError", f"key {item['key']!r} not in {kind[:-1]} {name}"
                )
            files[item["path"]] = (data[item["key"]], item.get("mode"))
        return files

    async def token(self, pod: Pod, source: dict[str, Any]) -> bytes:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": int(source.get("expirationSeconds", 3600)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        answer = await self.call(
            "POST", f"serviceaccounts/{account}/token", namespace=meta["namespace"], body=request
        )
        return str(answer["status"]["token"]).encode()

    async def claim(self, namespace: str, source: dict[str, Any]) -> Path:
        name = source["claimName"]
        if await get_or_none(self.call, f"persistentvolumeclaims/{name}", namespace) is None:
            raise PodWaiting("CreateContainerConfigError", f"claim {namespace}/{name} not found")
        path = self.claims_dir / f"{namespace}_{name}"
        if not path.is_dir():
            path.mkdir(parents=True)
            # like rancher's local-path provisioner: any container user may write; later
            # pods find the ownership the first one left
            path.chmod(0o777)
        return path

    def forget(self, uid: str) -> None:
        shutil.rmtree(self.pods_dir / uid, ignore_errors=True)

    def forget_all(self) -> None:
        shutil.rmtree(self.pods_dir, ignore_errors=True)


def mounts(
    container: dict[str, Any], paths: dict[str, tuple[Path, bool]], targets: dict[str, str]
) -> list[str]:
    """``buildah run -v`` options for a container's ``volumeMounts``, parents first.

    ``targets``: where each ``mountPath`` really leads in the image (symlinks followed).
    """
    options: list[tuple[int, str]] = []
    for mount in container.get("volumeMounts", []):
        name = mount["name"]
        if name not in paths:
            raise PodError("CreateContainerConfigError", f"volume mount of unknown volume {name}")
        source, read_only = paths[name]
        sub = mount.get("subPath", "")
        if sub:
            relative = PurePosixPath(sub)
            if relative.is_absolute() or ".." in relative.parts:
                raise PodError("CreateContainerConfigError", f"subPath {sub!r} leaves its volume")
            source = source / relative
            if not source.exists() and read_only:
                raise PodError("CreateContainerConfigError", f"volume {name} has no {sub!r}")
            if not source.exists():  # a kubelet creates a missing subPath as a directory
                source.mkdir(parents=True)
                source.chmod(0o777)
        target = targets.get(mount["mountPath"], mount["mountPath"])
        read_only = read_only or bool(mount.get("readOnly"))
        option = f"{source}:{target}" + (":ro" if read_only else "")
        options.append((len(PurePosixPath(target).parts), option))
    # a mount inside another must come after it, or the outer one would hide it
    return [option for _, option in sorted(options, key=lambda x: x[0])]


def _write_files(
    root: Path, files: dict[str, tuple[bytes, int | None]], mode: int, owner: tuple[int, int] | None
) -> None:
    root.mkdir()
    for relative, (content, own_mode) in files.items():
        path = root / relative
        if not path.resolve().is_relative_to(root.resolve()):
            raise PodError("CreateContainerConfigError", f"volume file {relative!r} leaves it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(own_mode if own_mode is not None else mode)
    if owner is not None:
        for path in [root, *root.rglob("*")]:
            os.chown(path, *owner)


def _downward(pod: Pod, items: list[dict[str, Any]]) -> dict[str, tuple[bytes, int | None]]:
    files: dict[str, tuple[bytes, int | None]] = {}
    meta = pod["metadata"]
    for item in items:
        if "fieldRef" in item:
            path = item["fieldRef"]["fieldPath"]
            if path in ("metadata.labels", "metadata.annotations"):
                table = meta.get(path.split(".")[1], {})
                value = "\n".join(f'{k}="{v}"' for k, v in sorted(table.items()))
            else:
                value = field_value(pod, path, f"volume file {item['path']}")
        else:
            ref = item["resourceFieldRef"]
            container = next(
                (c for c in pod["spec"]["containers"] if c["name"] == ref.get("containerName")),
                pod["spec"]["containers"][0],
            )
            kind, _, resource = ref["resource"].partition(".")
            value = str(container.get("resources", {}).get(kind, {}).get(resource, "0"))
        files[item["path"]] = (value.encode(), item.get("mode"))
    return files


def _host_path(source: dict[str, Any]) -> Path:
    path = Path(source["path"])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind and not path.exists():
        raise PodWaiting("CreateContainerConfigError", f"hostPath {path} does not exist")
    return path


class ClaimBinder:
    """Binds pending claims to hostPath volumes on this node: the cluster has no provisioner.

    One PersistentVolume ``farside-<claim uid>`` per claim, pre-bound through its
    ``claimRef`` (the controller-manager's binder completes the binding), ``Retain``ed, as
    big as asked. When the claim goes, its volume goes too; the directory stays, so a claim
    made again under the same name finds its data.
    """

    def __init__(self, call: Call, node: str, claims_dir: Path) -> None:
        self.call = call
        self.node = node
        self.claims_dir = claims_dir

    async def run(self) -> None:
        while True:
            try:
                await self.bind_pending()
            except Exception as exc:  # the next round tries again
                log.warning("claim binder: %s", exc)
            await asyncio.sleep(BIND_EVERY)

    async def bind_pending(self) -> None:
        claims = (await self.call("GET", "persistentvolumeclaims"))["items"]
        volumes = (await self.call("GET", "persistentvolumes"))["items"]
        ours = {
            v["metadata"]["name"]: v
            for v in volumes
            if (v["metadata"].get("labels") or {}).get("farside.dev/claims-of") == self.node
        }
        live = {c["metadata"]["uid"] for c in claims}
        for name, volume in ours.items():
            ref = volume["spec"].get("claimRef") or {}
            if ref.get("uid") not in live:
                with contextlib.suppress(kr8s.ServerError):
                    await self.call("DELETE", f"persistentvolumes/{name}")
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            if spec.get("volumeName") or claim.get("status", {}).get("phase") != "Pending":
                continue
            if f"farside-{meta['uid']}" not in ours:
                await self.create_volume(claim)

    async def create_volume(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        path = self.claims_dir / f"{meta['namespace']}_{meta['name']}"
        hostname = {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node]}
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"farside-{meta['uid']}",
                "labels": {"farside.dev/claims-of": self.node},
            },
            "spec": {
                "capacity": {
                    "storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
                },
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": spec.get("storageClassName") or "",
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "nodeAffinity": {
                    "required": {"nodeSelectorTerms": [{"matchExpressions": [hostname]}]}
                },
            },
        }
        try:
            await self.call("POST", "persistentvolumes", body=volume)
        except kr8s.ServerError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
        log.info("claim %s/%s: volume at %s", meta["namespace"], meta["name"], path)
