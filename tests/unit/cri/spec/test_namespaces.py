"""Pod namespaces of containers, user namespaces, cgroup namespaces, and sysctl checks."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import InvalidArgument
from tests.unit.cri.spec.helpers import (
    SANDBOX_PID,
    build,
    build_sandbox,
    container_config,
    mount_at,
    namespace,
    options,
    sandbox_config,
)

ID_MAP = api.IDMapping(host_id=1000, container_id=1000, length=10)
OTHER_MAP = api.IDMapping(host_id=2000, container_id=2000, length=10)
EXPECTED_MAP = [{"containerID": 1000, "hostID": 1000, "size": 10}]


def test_containers_join_the_pause_namespaces() -> None:
    spec = build()
    for kind, name in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"), ("pid", "pid")):
        assert namespace(spec, kind) == {"type": kind, "path": f"/proc/{SANDBOX_PID}/ns/{name}"}
    assert namespace(spec, "mount") == {"type": "mount"}
    assert namespace(spec, "user") is None and namespace(spec, "cgroup") is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # containerd's TestPidNamespace.
        (api.NODE, {"type": "pid", "path": f"/proc/{SANDBOX_PID}/ns/pid"}),
        (api.CONTAINER, {"type": "pid"}),
        (api.POD, {"type": "pid", "path": f"/proc/{SANDBOX_PID}/ns/pid"}),
    ],
)
def test_pid_namespace(mode: api.NamespaceMode, expected: dict[str, str]) -> None:
    config = container_config()
    config.linux.security_context.namespace_options.pid = mode
    assert namespace(build(config), "pid") == expected


def test_target_pid_namespace() -> None:
    config = container_config()
    config.linux.security_context.namespace_options.pid = api.TARGET
    config.linux.security_context.namespace_options.target_id = "other"
    spec = build(config, target_pid={"other": 4321}.__getitem__)
    assert namespace(spec, "pid") == {"type": "pid", "path": "/proc/4321/ns/pid"}
    assert namespace(spec, "network") == {"type": "network", "path": f"/proc/{SANDBOX_PID}/ns/net"}
    with pytest.raises(InvalidArgument, match="target"):
        build(config)


@pytest.mark.parametrize(
    ("cgroup_v2", "privileged", "expected"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
)
def test_cgroup_namespace(cgroup_v2: bool, privileged: bool, expected: bool) -> None:
    config, pod = container_config(), sandbox_config()
    config.linux.security_context.privileged = pod.linux.security_context.privileged = privileged
    spec = build(config, pod, opts=options(cgroup_v2=cgroup_v2))
    assert (namespace(spec, "cgroup") == {"type": "cgroup"}) is expected


def _userns(
    container: api.UserNamespace | None, pod: api.UserNamespace | None = None, network: api.NamespaceMode = api.POD
) -> dict[str, Any]:
    config, sandbox = container_config(), sandbox_config()
    if container is not None:
        config.linux.security_context.namespace_options.userns_options.CopyFrom(container)
    pod = pod if pod is not None else container
    if pod is not None:
        sandbox.linux.security_context.namespace_options.userns_options.CopyFrom(pod)
    sandbox.linux.security_context.namespace_options.network = network
    return build(config, sandbox)


def test_pod_user_namespace() -> None:
    spec = _userns(api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]))
    assert namespace(spec, "user") == {"type": "user", "path": f"/proc/{SANDBOX_PID}/ns/user"}
    assert spec["linux"]["uidMappings"] == spec["linux"]["gidMappings"] == EXPECTED_MAP
    assert mount_at(spec, "/etc/hosts")["uidMappings"] == EXPECTED_MAP  # pod files are id-mapped
    assert "uidMappings" not in mount_at(spec, "/dev/shm")
    assert mount_at(spec, "/sys")["type"] == "sysfs"


def test_node_user_namespace() -> None:
    spec = _userns(api.UserNamespace(mode=api.NODE))
    assert namespace(spec, "user") is None and "uidMappings" not in spec["linux"]


@pytest.mark.parametrize(
    ("container", "pod"),
    [
        # containerd's TestUserNamespace error rows.
        (api.UserNamespace(mode=api.NODE, uids=[ID_MAP], gids=[ID_MAP]), None),
        (api.UserNamespace(mode=api.CONTAINER), None),
        (api.UserNamespace(mode=api.TARGET), None),
        (api.UserNamespace(mode=cast(api.NamespaceMode, 100)), None),
        (
            api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]),
            api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[OTHER_MAP]),
        ),
        (
            api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]),
            api.UserNamespace(mode=api.POD, uids=[OTHER_MAP], gids=[ID_MAP]),
        ),
        (
            api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]),
            api.UserNamespace(mode=api.POD, uids=[ID_MAP, ID_MAP], gids=[ID_MAP, ID_MAP]),
        ),
        (
            api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]),
            api.UserNamespace(mode=api.NODE, uids=[ID_MAP], gids=[ID_MAP]),
        ),
        (api.UserNamespace(mode=api.POD, uids=[ID_MAP, ID_MAP], gids=[ID_MAP, ID_MAP]), None),
        (api.UserNamespace(mode=api.POD, uids=[ID_MAP, ID_MAP], gids=[ID_MAP]), None),
        (api.UserNamespace(mode=api.POD, uids=[ID_MAP]), None),
        (api.UserNamespace(mode=api.POD, uids=[api.IDMapping(length=0)], gids=[ID_MAP]), None),
    ],
)
def test_bad_user_namespaces(container: api.UserNamespace, pod: api.UserNamespace | None) -> None:
    with pytest.raises(InvalidArgument):
        _userns(container, pod)


def test_container_and_pod_must_agree_on_a_user_namespace() -> None:
    with pytest.raises(InvalidArgument, match="different"):
        _userns(api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]), api.UserNamespace())


def test_host_network_user_namespace_binds_sys() -> None:
    spec = _userns(api.UserNamespace(mode=api.POD, uids=[ID_MAP], gids=[ID_MAP]), network=api.NODE)
    assert mount_at(spec, "/sys") == {
        "destination": "/sys",
        "type": "bind",
        "source": "/sys",
        "options": ["rbind", "rro", "nosuid", "nodev", "noexec"],
    }
    assert mount_at(_userns(api.UserNamespace(mode=api.NODE), network=api.NODE), "/sys")["type"] == "sysfs"


def _sysctls(
    sysctls: dict[str, str], network: api.NamespaceMode = api.POD, ipc: api.NamespaceMode = api.POD
) -> dict[str, str]:
    pod = sandbox_config()
    pod.linux.sysctls.update(sysctls)
    pod.linux.security_context.namespace_options.network = network
    pod.linux.security_context.namespace_options.ipc = ipc
    result: dict[str, str] = build_sandbox(pod)["linux"].get("sysctl", {})
    return result


def test_namespaced_sysctls_pass() -> None:
    wanted = {
        "net.core.somaxconn": "1024",
        "kernel.shm_rmid_forced": "1",
        "kernel.msgmax": "65536",
        "kernel.sem": "250 32000 100 128",
        "fs.mqueue.msg_max": "20",
        "kernel.domainname": "example.com",
    }
    assert _sysctls(wanted).items() >= wanted.items()
    assert _sysctls({"kernel.shmmax": "1"}, network=api.NODE) == {"kernel.shmmax": "1"}
    assert _sysctls({"net.ipv4.ip_forward": "1"}, ipc=api.NODE)["net.ipv4.ip_forward"] == "1"


@pytest.mark.parametrize(
    ("sysctl", "network", "ipc", "message"),
    [
        ("net.core.somaxconn", api.NODE, api.POD, "network namespace"),
        ("kernel.domainname", api.NODE, api.POD, "network namespace"),
        ("kernel.shmmax", api.POD, api.NODE, "IPC namespace"),
        ("fs.mqueue.msg_max", api.POD, api.NODE, "IPC namespace"),
        ("kernel.hostname", api.POD, api.POD, "hostname"),
        ("vm.swappiness", api.POD, api.POD, "not in a separate kernel namespace"),
        ("kernel.pid_max", api.POD, api.POD, "not in a separate kernel namespace"),
    ],
)
def test_host_wide_sysctls_are_refused(
    sysctl: str, network: api.NamespaceMode, ipc: api.NamespaceMode, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _sysctls({sysctl: "1"}, network, ipc)
