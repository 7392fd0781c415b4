"""Builders for CRI requests shaped like containerd's own test data, and a fake host."""

from __future__ import annotations

import dataclasses
from typing import Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig, SandboxFiles, SpecOptions, container_spec, sandbox_spec
from pycontainerd.cri.spec.options import HostDevice
from pycontainerd.errdefs import InvalidArgument, NotFound

SANDBOX_PID = 1234
FILES = SandboxFiles(
    hostname="/var/lib/cri/sandboxes/sb/hostname",
    hosts="/var/lib/cri/sandboxes/sb/hosts",
    resolv_conf="/var/lib/cri/sandboxes/sb/resolv.conf",
    shm="/run/cri/sandboxes/sb/shm",
)

# A fake /dev: two nodes, one below a directory.
HOST_DEVICES = {
    "/dev/null": HostDevice("/dev/null", "c", 1, 3, 0o666, 0, 0),
    "/dev/fuse": HostDevice("/dev/fuse", "c", 10, 229, 0o666, 0, 0),
    "/dev/snd/pcm0": HostDevice("/dev/snd/pcm0", "c", 116, 16, 0o660, 0, 29),
}


def fake_devices(path: str) -> list[HostDevice]:
    """A DeviceLookup over HOST_DEVICES: a node, or every node below a directory."""
    if path in HOST_DEVICES:
        return [HOST_DEVICES[path]]
    below = [d for p, d in sorted(HOST_DEVICES.items()) if p.startswith(path.rstrip("/") + "/")]
    if not below:
        if path == "/dev/sda-missing":
            raise NotFound(path)
        raise InvalidArgument(f"{path}: not a device node")
    return [dataclasses.replace(d, subpath=d.path[len(path.rstrip("/")) + 1 :]) for d in below]


def options(**overrides: Any) -> SpecOptions:
    """Options for a cgroup v1 x86_64 host with Linux 6.1 and the fake /dev."""
    values: dict[str, Any] = {"host_devices": fake_devices, "node_hostname": "node-1"}
    values.update(overrides)
    return SpecOptions(**values)


def container_config() -> api.ContainerConfig:
    """containerd's container test config (absolute mount paths, as kubelet sends)."""
    config = api.ContainerConfig(
        metadata=api.ContainerMetadata(name="test-name", attempt=1),
        image=api.ImageSpec(image="sha256:c75bebcdd211f41b3a460c7bf82970ed6c75acaab9cd4c9a4e125b03ca113799"),
        command=["test", "command"],
        args=["test", "args"],
        working_dir="test-cwd",
        envs=[
            api.KeyValue(key="k1", value=b"v1"),
            api.KeyValue(key="k2", value=b"v2"),
            api.KeyValue(key="k3", value=b"v3=v3bis"),
            api.KeyValue(key="k4", value=b"v4=v4bis=foop"),
        ],
        mounts=[
            api.Mount(container_path="/container-path-1", host_path="/host-path-1"),
            api.Mount(container_path="/container-path-2", host_path="/host-path-2", readonly=True),
        ],
    )
    config.labels["a"] = "b"
    config.annotations["ca-c"] = "ca-d"
    res = config.linux.resources
    res.cpu_period, res.cpu_quota, res.cpu_shares = 100, 200, 300
    res.memory_limit_in_bytes, res.oom_score_adj = 400, 500
    res.cpuset_cpus, res.cpuset_mems = "0-1", "2-3"
    res.unified.update({"memory.min": "65536", "memory.swap.max": "1024"})
    sc = config.linux.security_context
    sc.supplemental_groups.extend([1111, 2222])
    sc.no_new_privs = True
    return config


def sandbox_config() -> api.PodSandboxConfig:
    """containerd's pod test config."""
    config = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(
            name="test-sandbox-name", uid="test-sandbox-uid", namespace="test-sandbox-ns", attempt=2
        ),
        hostname="test-hostname",
        log_directory="/var/log/pods/test",
    )
    config.annotations["c"] = "d"
    config.linux.cgroup_parent = "/test/cgroup/parent"
    config.linux.security_context.SetInParent()
    return config


IMAGE = ImageConfig(
    env=("ik1=iv1", "ik2=iv2", "ik3=iv3=iv3bis", "ik4=iv4=iv4bis=boop"),
    entrypoint=("/entrypoint",),
    cmd=("cmd",),
    working_dir="/workspace",
)
PAUSE = ImageConfig(entrypoint=("/pause",), cmd=("forever",), env=("a=b", "c=d"), working_dir="/workspace")


def build(
    config: api.ContainerConfig | None = None,
    sandbox: api.PodSandboxConfig | None = None,
    *,
    image: ImageConfig = IMAGE,
    opts: SpecOptions | None = None,
    passwd: str | None = None,
    group: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """container_spec for the test data, with any part replaced."""
    return container_spec(
        container_id="test-id",
        sandbox_id="sandbox-id",
        config=config if config is not None else container_config(),
        sandbox_config=sandbox if sandbox is not None else sandbox_config(),
        image=image,
        image_ref="docker.io/library/busybox:latest",
        sandbox_pid=SANDBOX_PID,
        files=kwargs.pop("files", FILES),
        passwd=passwd,
        group=group,
        options=opts or options(),
        **kwargs,
    )


def build_sandbox(
    config: api.PodSandboxConfig | None = None, *, opts: SpecOptions | None = None, **kwargs: Any
) -> dict[str, Any]:
    """sandbox_spec for the test data."""
    return sandbox_spec(
        sandbox_id="test-id",
        config=config if config is not None else sandbox_config(),
        image=kwargs.pop("image", PAUSE),
        netns_path=kwargs.pop("netns_path", "/var/run/netns/cni-1"),
        files=kwargs.pop("files", FILES),
        options=opts or options(),
        **kwargs,
    )


def mount_at(spec: dict[str, Any], destination: str) -> dict[str, Any]:
    """The one mount at ``destination``."""
    found: list[dict[str, Any]] = [m for m in spec["mounts"] if m["destination"] == destination]
    assert len(found) == 1, found
    return found[0]


def namespace(spec: dict[str, Any], kind: str) -> dict[str, str] | None:
    """The spec's namespace entry of ``kind``, if any."""
    return next((ns for ns in spec["linux"].get("namespaces", []) if ns["type"] == kind), None)
