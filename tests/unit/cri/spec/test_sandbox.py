"""The pause container's spec and the pod's files (containerd's TestLinuxSandboxContainerSpec and friends)."""

from __future__ import annotations

from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec import ImageConfig, SandboxFiles, hostname_file, hosts_file, resolv_conf
from pycontainerd.errdefs import InvalidArgument
from tests.unit.cri.spec.helpers import FILES, build_sandbox, mount_at, namespace, options, sandbox_config

FILE_OPTIONS = ["rbind", "ro", "nosuid", "nodev", "noexec"]
ID_MAP = api.IDMapping(host_id=1000, container_id=1000, length=10)


def test_spec_reflects_the_config() -> None:
    spec = build_sandbox()
    assert spec["hostname"] == "test-hostname"
    assert spec["linux"]["cgroupsPath"] == "/test/cgroup/parent/test-id"
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    proc = spec["process"]
    assert proc["env"] == ["a=b", "c=d"]  # the pause image's environment only
    assert proc["args"] == ["/pause", "forever"] and proc["cwd"] == "/workspace"
    assert proc["noNewPrivileges"] is True and proc["user"] == {"uid": 0, "gid": 0}
    assert spec["linux"]["resources"]["cpu"] == {"shares": 2}
    assert proc["oomScoreAdj"] == -998
    assert spec["annotations"] == {
        "io.kubernetes.cri.sandbox-id": "test-id",
        "io.kubernetes.cri.sandbox-namespace": "test-sandbox-ns",
        "io.kubernetes.cri.sandbox-uid": "test-sandbox-uid",
        "io.kubernetes.cri.sandbox-name": "test-sandbox-name",
        "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/test",
        "io.kubernetes.cri.podsandbox.image-name": "",
        "io.kubernetes.cri.container-type": "sandbox",
    }
    assert mount_at(spec, "/etc/resolv.conf") == {
        "destination": "/etc/resolv.conf",
        "type": "bind",
        "source": FILES.resolv_conf,
        "options": FILE_OPTIONS,
    }
    assert mount_at(spec, "/dev/shm") == {
        "destination": "/dev/shm",
        "type": "bind",
        "source": FILES.shm,
        "options": FILE_OPTIONS,
    }
    assert all(m["destination"] not in ("/run", "/etc/hosts", "/etc/hostname") for m in spec["mounts"])
    # The pause container keeps containerd's default masked paths and capabilities.
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]


def test_default_namespaces_and_sysctls() -> None:
    spec = build_sandbox()
    assert namespace(spec, "network") == {"type": "network", "path": "/var/run/netns/cni-1"}
    assert all(namespace(spec, kind) == {"type": kind} for kind in ("uts", "pid", "ipc", "mount"))
    assert spec["linux"]["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "0",
        "net.ipv4.ping_group_range": "0 2147483647",
    }


def test_host_namespaces() -> None:
    pod = sandbox_config()
    nsopts = pod.linux.security_context.namespace_options
    nsopts.network = nsopts.pid = nsopts.ipc = api.NODE
    pod.hostname = ""
    spec = build_sandbox(pod)
    assert [ns["type"] for ns in spec["linux"]["namespaces"]] == ["mount"]
    assert "sysctl" not in spec["linux"] and "hostname" not in spec
    assert mount_at(spec, "/dev/shm")["source"] == "/dev/shm"


def test_unprivileged_defaults_can_be_overridden_or_disabled() -> None:
    pod = sandbox_config()
    pod.linux.sysctls.update({"net.ipv4.ip_unprivileged_port_start": "500", "net.ipv4.ping_group_range": "1 1000"})
    assert build_sandbox(pod)["linux"]["sysctl"] == {
        "net.ipv4.ip_unprivileged_port_start": "500",
        "net.ipv4.ping_group_range": "1 1000",
    }
    assert (
        "sysctl"
        not in build_sandbox(opts=options(enable_unprivileged_ports=False, enable_unprivileged_icmp=False))["linux"]
    )
    inside_userns = build_sandbox(opts=options(running_in_user_namespace=True))["linux"]["sysctl"]
    assert "net.ipv4.ping_group_range" not in inside_userns


def _userns(
    network: api.NamespaceMode = api.POD, mode: api.NamespaceMode = api.POD, userns_path: str = ""
) -> dict[str, Any]:
    pod = sandbox_config()
    nsopts = pod.linux.security_context.namespace_options
    nsopts.network = network
    nsopts.userns_options.CopyFrom(api.UserNamespace(mode=mode, uids=[ID_MAP], gids=[ID_MAP]))
    return build_sandbox(pod, userns_path=userns_path)


def test_user_namespace_uses_the_pinned_one() -> None:
    spec = _userns(userns_path="/run/cri/sandboxes/test-id/pinned-namespaces/user")
    assert namespace(spec, "user") == {"type": "user", "path": "/run/cri/sandboxes/test-id/pinned-namespaces/user"}
    assert (
        spec["linux"]["uidMappings"]
        == spec["linux"]["gidMappings"]
        == [{"containerID": 1000, "hostID": 1000, "size": 10}]
    )
    assert "net.ipv4.ping_group_range" not in spec["linux"]["sysctl"]
    assert mount_at(spec, "/sys")["type"] == "sysfs"


def test_host_network_user_namespace() -> None:
    spec = _userns(network=api.NODE, userns_path="/pinned")
    assert namespace(spec, "user") == {"type": "user"}  # not pinned with host networking
    assert mount_at(spec, "/sys")["source"] == "/sys" and mount_at(spec, "/sys")["type"] == "bind"


def test_bad_user_namespace() -> None:
    with pytest.raises(InvalidArgument):
        _userns(mode=api.NODE)  # mappings with NODE
    with pytest.raises(InvalidArgument):
        _userns(mode=api.CONTAINER)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (
            api.LinuxContainerResources(cpu_period=100, cpu_quota=200, cpu_shares=5000, memory_limit_in_bytes=1024),
            ("100", "200", "5000", "1024"),
        ),
        (api.LinuxContainerResources(), ("0", "0", "0", "0")),
        (None, None),
    ],
)
def test_sizing_annotations(resources: api.LinuxContainerResources | None, expected: tuple[str, ...] | None) -> None:
    pod = sandbox_config()
    if resources is not None:
        pod.linux.resources.CopyFrom(resources)
    annotations = build_sandbox(pod)["annotations"]
    keys = [f"io.kubernetes.cri.sandbox-{k}" for k in ("cpu-period", "cpu-quota", "cpu-shares", "memory")]
    if expected is None:
        assert not any(k in annotations for k in keys)
    else:
        assert tuple(annotations[k] for k in keys) == expected


def test_pod_annotations_pass_through_by_pattern() -> None:
    pod = sandbox_config()
    pod.annotations.update({"io.katacontainers.config.x": "1", "other/y": "2"})
    spec = build_sandbox(
        pod, opts=options(pod_annotations=("io.katacontainers.*",)), sandbox_image="registry.k8s.io/pause:3.10"
    )
    assert spec["annotations"]["io.katacontainers.config.x"] == "1" and "other/y" not in spec["annotations"]
    assert spec["annotations"]["io.kubernetes.cri.podsandbox.image-name"] == "registry.k8s.io/pause:3.10"


def test_users_and_groups() -> None:
    pod = sandbox_config()
    pod.linux.security_context.supplemental_groups.extend([2222, 1111])
    assert build_sandbox(pod)["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [1111, 2222]}
    pod.linux.security_context.run_as_user.value = 65535
    pod.linux.security_context.run_as_group.value = 65535
    # containerd sets the user after the groups, which resets them to the primary group.
    assert build_sandbox(pod)["process"]["user"] == {"uid": 65535, "gid": 65535, "additionalGids": [65535]}
    image = ImageConfig(entrypoint=("/pause",), user="65535:65535")
    assert build_sandbox(image=image)["process"]["user"] == {"uid": 65535, "gid": 65535, "additionalGids": [65535]}


def test_command_line() -> None:
    assert build_sandbox(pause_args=["/pause", "-v"])["process"]["args"] == ["/pause", "-v"]
    with pytest.raises(InvalidArgument, match="entrypoint"):
        build_sandbox(image=ImageConfig())


def test_privileged_pod_gets_writable_sysfs() -> None:
    pod = sandbox_config()
    pod.linux.security_context.privileged = True
    assert mount_at(build_sandbox(pod), "/sys")["options"] == ["nosuid", "noexec", "nodev", "rw"]
    assert mount_at(build_sandbox(), "/sys")["options"] == ["nosuid", "noexec", "nodev", "ro"]


def test_unprepared_files_are_not_mounted() -> None:
    spec = build_sandbox(files=SandboxFiles())
    assert all(m["destination"] not in ("/dev/shm", "/etc/resolv.conf") for m in spec["mounts"])


@pytest.mark.parametrize(
    ("servers", "searches", "opts", "expected"),
    [
        # containerd's TestParseDNSOption.
        ([], [], [], ""),
        (
            ["8.8.8.8", "server.google.com"],
            ["114.114.114.114"],
            ["timeout:1"],
            "search 114.114.114.114\nnameserver 8.8.8.8\nnameserver server.google.com\noptions timeout:1\n",
        ),
        (
            ["8.8.8.8"],
            [f"server{i}.google.com" for i in range(7)],
            ["timeout:1", "ndots:5"],
            "search "
            + " ".join(f"server{i}.google.com" for i in range(7))
            + "\nnameserver 8.8.8.8\noptions timeout:1 ndots:5\n",
        ),
    ],
)
def test_resolv_conf(servers: list[str], searches: list[str], opts: list[str], expected: str) -> None:
    assert resolv_conf(api.DNSConfig(servers=servers, searches=searches, options=opts)) == expected


def test_hosts_and_hostname_files() -> None:
    assert hosts_file("127.0.0.1 localhost\n10.0.0.1 node\n") == "127.0.0.1 localhost\n10.0.0.1 node\n"
    assert "localhost" in hosts_file(None)
    assert hostname_file(sandbox_config(), "node-1") == "test-hostname\n"
    assert hostname_file(api.PodSandboxConfig(), "node-1") == "node-1\n"
