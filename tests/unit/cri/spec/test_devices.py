"""CRI devices, their cgroup rules and ownership, and the host device walk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec.host import device_nodes
from pycontainerd.errdefs import InvalidArgument, NotFound
from tests.unit.cri.spec.helpers import build, container_config, options


def _with_devices(
    *devices: api.Device, uid: int | None = None, gid: int | None = None, owned: bool = False
) -> dict[str, Any]:
    config = container_config()
    config.devices.extend(devices)
    sc = config.linux.security_context
    if uid is not None:
        sc.run_as_user.value = uid
    if gid is not None:
        sc.run_as_group.value = gid
    linux: dict[str, Any] = build(config, opts=options(device_ownership_from_security_context=owned))["linux"]
    return linux


def test_device_and_its_cgroup_rule() -> None:
    linux = _with_devices(api.Device(host_path="/dev/fuse", container_path="/dev/fuse", permissions="rwm"))
    assert linux["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}
    ]
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
    ]


def test_device_directory_maps_below_the_container_path() -> None:
    linux = _with_devices(api.Device(host_path="/dev/snd", container_path="/dev/audio", permissions="r"))
    assert [d["path"] for d in linux["devices"]] == ["/dev/audio/pcm0"]
    assert linux["devices"][0]["gid"] == 29


def test_device_without_container_path_keeps_the_host_path() -> None:
    linux = _with_devices(api.Device(host_path="/dev/null", permissions="rw"))
    assert linux["devices"][0]["path"] == "/dev/null"


@pytest.mark.parametrize(
    ("uid", "gid", "owned", "expected"),
    [
        # containerd's TestNonRootUserAndDevices.
        (1, 10, False, (0, 29)),
        (0, 0, False, (0, 29)),
        (1, 10, True, (1, 10)),
        (0, 0, True, (0, 29)),  # zero keeps the node's owner
    ],
)
def test_ownership_from_security_context(uid: int, gid: int, owned: bool, expected: tuple[int, int]) -> None:
    linux = _with_devices(
        api.Device(host_path="/dev/snd/pcm0", container_path="/dev/snd/pcm0"), uid=uid, gid=gid, owned=owned
    )
    assert (linux["devices"][0]["uid"], linux["devices"][0]["gid"]) == expected


def test_missing_and_non_devices() -> None:
    with pytest.raises(NotFound):
        _with_devices(api.Device(host_path="/dev/sda-missing", container_path="/dev/sda"))
    with pytest.raises(InvalidArgument):
        _with_devices(api.Device(host_path="/etc/passwd", container_path="/dev/x"))


def test_real_device_nodes(tmp_path: Path) -> None:
    (null,) = device_nodes("/dev/null")
    assert (null.type, null.major, null.minor, null.file_mode) == ("c", 1, 3, 0o666)
    os.symlink("/dev/null", tmp_path / "link")
    assert device_nodes(str(tmp_path / "link"))[0].path == "/dev/null"  # symlinks resolved
    with pytest.raises(NotFound):
        device_nodes(str(tmp_path / "nothing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgument):
        device_nodes(str(tmp_path / "file"))
    os.mkfifo(tmp_path / "fifo")
    assert device_nodes(str(tmp_path)) == []  # a FIFO below a directory is skipped


def test_walking_dev() -> None:
    nodes = {d.path: d for d in device_nodes("/dev")}
    assert "/dev/null" in nodes and nodes["/dev/null"].subpath == "null"
    assert not any(p.startswith(("/dev/pts/", "/dev/shm/")) or p == "/dev/console" for p in nodes)
