"""OCI specs for CRI pods and containers (interim builder until cri.spec lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
    from pycontainerd.cri import state
    from pycontainerd.cri.images import ImageInfo
    from pycontainerd.cri.service import CRIService


def build_sandbox_spec(
    svc: CRIService, pod: state.PodSandbox, files: dict[str, str], pause_args: list[str]
) -> dict[str, Any]:
    spec = oci.default_spec(svc.ctx.namespace, pod.id, pause_args)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] in ("/proc", "/dev", "/sys", "/dev/shm")]
    if pod.netns_path:
        oci.with_namespace(spec, "network", pod.netns_path)
    else:
        oci.without_namespace(spec, "network")
    oci.with_hostname(spec, pod.config.hostname or pod.id[:12])
    return spec


def build_container_spec(
    svc: CRIService,
    pod: state.PodSandbox,
    container_id: str,
    config: api.ContainerConfig,
    image: ImageInfo,
    passwd: str | None,
    group: str | None,
) -> tuple[dict[str, Any], tuple[int, int, tuple[int, ...]]]:
    img = image.config.get("config") or {}
    args = list(config.command) or list(img.get("Entrypoint") or [])
    args += list(config.args) if (config.args or config.command) else list(img.get("Cmd") or [])
    spec = oci.default_spec(svc.ctx.namespace, container_id, args)
    env = list(img.get("Env") or spec["process"]["env"]) + [str(kv.key) + "=" + str(kv.value) for kv in config.envs]
    spec["process"]["env"] = env
    spec["process"]["cwd"] = config.working_dir or img.get("WorkingDir") or "/"
    spec["process"]["terminal"] = config.tty
    files = svc.sandbox_dir(pod.id)
    for name, dest in (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")):
        if (files / name).exists():
            spec["mounts"].append(
                {"destination": dest, "type": "bind", "source": str(files / name), "options": ["rbind", "rw"]}
            )
    for kind, ns in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
        oci.with_namespace(spec, kind, f"/proc/{pod.pid}/ns/{ns}")
    spec["hostname"] = pod.config.hostname
    return spec, (0, 0, ())


def updated_spec(svc: CRIService, spec: dict[str, Any], resources: api.LinuxContainerResources) -> dict[str, Any]:
    return spec
