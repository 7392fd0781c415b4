"""The CRI plugin's view of pods and containers, and how it is kept across restarts.

A pod is a sandbox record (sandbox store, namespace ``k8s.io``) whose extension
``io.cri-containerd.sandbox.metadata`` carries the pod's CRI config, runtime handler, network
namespace and IPs. A container is a container record labelled ``io.cri-containerd.kind =
container`` with the extension ``io.cri-containerd.container.metadata``; its status (state,
pid, times, exit code) changes often and lives in ``<plugin root>/containers/<id>/status.json``,
written atomically. On start the plugin rebuilds its memory from these and from the tasks the
runtime manager found again.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import AlreadyExists, NotFound

if TYPE_CHECKING:
    import asyncio

    from pycontainerd.cri.io import ContainerIO

SANDBOX_EXTENSION = "io.cri-containerd.sandbox.metadata"
CONTAINER_EXTENSION = "io.cri-containerd.container.metadata"
KIND_LABEL = "io.cri-containerd.kind"
METADATA_TYPE_URL = "github.com/containerd/containerd/internal/cri/store/Metadata"


def _b64(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def _unb64(cls: Any, text: str) -> Any:
    return cls.FromString(base64.b64decode(text))


def sandbox_name(meta: api.PodSandboxMetadata) -> str:
    """The unique name kubelet's metadata gives a pod attempt: ``name_namespace_uid_attempt``."""
    return f"{meta.name}_{meta.namespace}_{meta.uid}_{meta.attempt}"


def container_name(meta: api.ContainerMetadata, pod: api.PodSandboxMetadata) -> str:
    """``container_pod_namespace_uid_attempt``: unique per container attempt in a pod."""
    return f"{meta.name}_{pod.name}_{pod.namespace}_{pod.uid}_{meta.attempt}"


@dataclass(slots=True)
class PodSandbox:
    """A pod as the CRI plugin tracks it."""

    id: str
    name: str
    config: api.PodSandboxConfig
    runtime_handler: str
    sandboxer: str
    created_at: int
    netns_path: str = ""
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)
    state: api.PodSandboxState = api.SANDBOX_NOTREADY
    pid: int = 0
    monitor: asyncio.Task[None] | None = None

    def to_json(self) -> bytes:
        """The sandbox-record extension."""
        doc = {
            "id": self.id,
            "name": self.name,
            "config": _b64(self.config),
            "runtime_handler": self.runtime_handler,
            "sandboxer": self.sandboxer,
            "created_at": self.created_at,
            "netns_path": self.netns_path,
            "ip": self.ip,
            "additional_ips": self.additional_ips,
        }
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PodSandbox:
        """Read back :meth:`to_json`."""
        doc = json.loads(data)
        return cls(
            id=doc["id"],
            name=doc["name"],
            config=_unb64(api.PodSandboxConfig, doc["config"]),
            runtime_handler=doc.get("runtime_handler", ""),
            sandboxer=doc.get("sandboxer", "podsandbox"),
            created_at=int(doc.get("created_at", 0)),
            netns_path=doc.get("netns_path", ""),
            ip=doc.get("ip", ""),
            additional_ips=list(doc.get("additional_ips", [])),
        )


@dataclass(slots=True)
class ContainerStatus:
    """The changing part of a container, persisted on every change."""

    state: api.ContainerState = api.CONTAINER_CREATED
    pid: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    removing: bool = False
    unknown: bool = False


@dataclass(slots=True)
class CRIContainer:
    """A container as the CRI plugin tracks it."""

    id: str
    name: str
    sandbox_id: str
    config: api.ContainerConfig
    image_id: str
    image_ref: str
    snapshotter: str
    log_path: str
    created_at: int
    status: ContainerStatus = field(default_factory=ContainerStatus)
    io: ContainerIO | None = None
    monitor: asyncio.Task[None] | None = None
    stop_signal: str = ""
    user: tuple[int, int, tuple[int, ...]] = (0, 0, ())

    def to_json(self) -> bytes:
        """The container-record extension (the status is stored apart)."""
        doc = {
            "id": self.id,
            "name": self.name,
            "sandbox_id": self.sandbox_id,
            "config": _b64(self.config),
            "image_id": self.image_id,
            "image_ref": self.image_ref,
            "snapshotter": self.snapshotter,
            "log_path": self.log_path,
            "created_at": self.created_at,
            "stop_signal": self.stop_signal,
            "user": [self.user[0], self.user[1], list(self.user[2])],
        }
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CRIContainer:
        """Read back :meth:`to_json`."""
        doc = json.loads(data)
        uid, gid, groups = doc.get("user", [0, 0, []])
        return cls(
            id=doc["id"],
            name=doc["name"],
            sandbox_id=doc["sandbox_id"],
            config=_unb64(api.ContainerConfig, doc["config"]),
            image_id=doc.get("image_id", ""),
            image_ref=doc.get("image_ref", ""),
            snapshotter=doc.get("snapshotter", ""),
            log_path=doc.get("log_path", ""),
            created_at=int(doc.get("created_at", 0)),
            stop_signal=doc.get("stop_signal", ""),
            user=(int(uid), int(gid), tuple(int(g) for g in groups)),
        )


class StatusFiles:
    """``<root>/containers/<id>/status.json``, replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root / "containers"

    def path(self, container_id: str) -> Path:
        """The status file of a container."""
        return self.root / container_id / "status.json"

    def save(self, container_id: str, status: ContainerStatus) -> None:
        """Write ``status`` (fsynced temp file, then rename)."""
        target = self.path(container_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".status-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(status), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, container_id: str) -> ContainerStatus:
        """The saved status (a fresh CREATED one when missing or unreadable)."""
        try:
            doc = json.loads(self.path(container_id).read_text())
            return ContainerStatus(**{k: v for k, v in doc.items() if k in ContainerStatus.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return ContainerStatus()

    def remove(self, container_id: str) -> None:
        """Forget a container's status."""
        self.path(container_id).unlink(missing_ok=True)
        try:
            self.path(container_id).parent.rmdir()
        except OSError:
            pass


class NameIndex:
    """Reserved names: a second pod or container with the same name is refused, as kubelet expects."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._by_name: dict[str, str] = {}

    def reserve(self, name: str, key: str) -> None:
        """Reserve ``name`` for ``key``; AlreadyExists when another key holds it."""
        holder = self._by_name.get(name)
        if holder is not None and holder != key:
            raise AlreadyExists(
                f"failed to reserve {self._kind} name {name!r}: name {name!r} is reserved for {holder!r}"
            )
        self._by_name[name] = key

    def release(self, name: str) -> None:
        """Free ``name``."""
        self._by_name.pop(name, None)


def find(items: dict[str, Any], kind: str, key: str) -> Any:
    """An item by full ID or unique ID prefix (crictl accepts prefixes); NotFound otherwise."""
    if not key:
        raise NotFound(f"{kind} ID must not be empty")
    found = items.get(key)
    if found is not None:
        return found
    matches = [v for k, v in items.items() if k.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"an error occurred when try to find {kind} {key!r}: not found")


def matches_selector(labels: Any, selector: Any) -> bool:
    """Whether ``labels`` hold every key and value of a CRI label selector."""
    return all(labels.get(key) == value for key, value in selector.items())
