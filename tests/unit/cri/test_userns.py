"""A CRI pod with a user namespace: its ID map, its network namespace owned by its user namespace,
and the container spec's namespaces when the pod shares the host's."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cni.netns import is_netns
from pycontainerd.cri import userns
from pycontainerd.snapshots.idmap import IDMap, IDRange
from tests.unit.cri.spec.helpers import build, container_config, mount_at, namespace, sandbox_config

NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1)
NS_GET_OWNER_UID = 0xB704
MAP = api.IDMapping(container_id=0, host_id=300000, length=65536)


def _pod(mode: api.NamespaceMode = api.POD, *, uids: int = 1, gids: int = 1) -> api.PodSandboxConfig:
    config = api.PodSandboxConfig()
    opts = config.linux.security_context.namespace_options.userns_options
    opts.mode = mode
    for _ in range(uids):
        opts.uids.append(MAP)
    for _ in range(gids):
        opts.gids.append(api.IDMapping(container_id=0, host_id=400000, length=65536))
    return config


def test_pod_idmap() -> None:
    assert userns.pod_idmap(_pod()) == IDMap((IDRange(0, 300000, 65536),), (IDRange(0, 400000, 65536),))
    assert userns.pod_idmap(api.PodSandboxConfig()) is None
    assert userns.pod_idmap(_pod(api.NODE, uids=0, gids=0)) is None
    assert userns.pod_idmap(_pod(gids=0)) is None


def test_userns_pin_is_beside_the_netns_pin() -> None:
    assert userns.userns_pin("/run/x/netns/cni-1234") == "/run/x/userns/cni-1234"
    assert userns.pinned_userns("") == ""
    assert userns.pinned_userns("/nonexistent/netns/cni-1") == ""


def _owner_inode(path: str, request: int) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, request)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


@pytest.mark.root
def test_pod_netns_is_owned_by_the_pinned_userns(tmp_path: Path) -> None:
    idmap = IDMap((IDRange(0, 300000, 65536),), (IDRange(0, 400000, 65536),))
    netns = asyncio.run(userns.create_pod_netns(tmp_path / "netns", idmap))
    user = userns.userns_pin(netns)
    try:
        assert is_netns(netns)
        assert userns.pinned_userns(netns) == user
        # The network namespace's owner is the pinned user namespace.
        assert _owner_inode(netns, NS_GET_USERNS) == os.stat(user).st_ino
        assert os.stat(user).st_ino != os.stat("/proc/self/ns/user").st_ino
    finally:
        userns.remove_pod_netns_sync(netns)
    assert not os.path.exists(netns) and not os.path.exists(user)
    assert userns.pinned_userns(netns) == ""
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()


def _spec(network: api.NamespaceMode, ipc: api.NamespaceMode = api.POD) -> dict[str, Any]:
    config, sandbox = container_config(), sandbox_config()
    for c in (config, sandbox):
        nsopts = c.linux.security_context.namespace_options
        nsopts.userns_options.CopyFrom(api.UserNamespace(mode=api.POD, uids=[MAP], gids=[MAP]))
        nsopts.network, nsopts.ipc = network, ipc
    return build(config, sandbox)


def test_host_network_userns_container_stays_in_the_hosts_namespaces() -> None:
    spec = _spec(api.NODE)
    # runc 1.1 joins the user namespace first, then could not enter the host's by path.
    assert namespace(spec, "network") is None
    assert namespace(spec, "uts") is None
    assert namespace(spec, "user") is not None
    destinations = [m["destination"] for m in spec["mounts"]]
    assert mount_at(spec, "/sys")["type"] == "bind"
    assert destinations.index("/sys") < destinations.index("/sys/fs/cgroup")
    # A pod network keeps joining by path.
    pod_net = _spec(api.POD)
    assert namespace(pod_net, "network") is not None and namespace(pod_net, "uts") is not None
    assert namespace(pod_net, "ipc") is not None
    assert namespace(_spec(api.POD, api.NODE), "ipc") is None
