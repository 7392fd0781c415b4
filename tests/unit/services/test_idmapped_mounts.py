"""ID-mapping options never leave the Snapshots API (1.6 clients mount snapshots themselves), and
come back for the task of the container's own snapshot; the bundle of a user-namespaced task."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.core.snapshots import Mount
from pycontainerd.errdefs import NotFound
from pycontainerd.namespaces import RequestContext
from pycontainerd.runtime.v2.bundle import new_bundle
from pycontainerd.services.snapshots import client_mounts, mount_to_pb, task_rootfs

IDMAPPED = Mount("overlay", "overlay", ("workdir=/w", "upperdir=/u", "lowerdir=/l", "uidmap=0:1:2", "gidmap=0:3:4"))
PLAIN = Mount("overlay", "overlay", ("workdir=/w", "upperdir=/u", "lowerdir=/l"))
CTX = RequestContext("ns")


class FakeSnapshotter:
    def __init__(self, mounts: list[Mount]) -> None:
        self._mounts = mounts

    def mounts(self, ctx: RequestContext, key: str) -> list[Mount]:
        if key != "c1":
            raise NotFound(key)
        return self._mounts


def _metadata(mounts: list[Mount]) -> Any:
    return SimpleNamespace(snapshotters={"overlayfs": FakeSnapshotter(mounts)})


def _container(key: str = "c1") -> Container:
    return Container("c1", Runtime("io.containerd.runc.v2"), snapshotter="overlayfs", snapshot_key=key)


def test_client_mounts_drop_the_mapping() -> None:
    assert client_mounts([IDMAPPED]) == [mount_to_pb(PLAIN)]
    assert client_mounts([PLAIN]) == [mount_to_pb(PLAIN)]


def test_task_rootfs_gets_the_mapping_back() -> None:
    metadata = _metadata([IDMAPPED])
    assert task_rootfs(metadata, CTX, _container(), [mount_to_pb(PLAIN)]) == [mount_to_pb(IDMAPPED)]
    # Anything else the client sends is its business.
    other = [mount_to_pb(Mount("bind", "/elsewhere", ("rbind",)))]
    assert task_rootfs(metadata, CTX, _container(), other) == other
    assert task_rootfs(metadata, CTX, _container("gone"), [mount_to_pb(PLAIN)]) == [mount_to_pb(PLAIN)]
    assert task_rootfs(metadata, CTX, _container(""), []) == []
    assert task_rootfs(_metadata([PLAIN]), CTX, _container(), [mount_to_pb(PLAIN)]) == [mount_to_pb(PLAIN)]


def _spec(gid: int | None) -> bytes:
    linux: dict[str, Any] = {}
    if gid is not None:
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 65536}]
    return json.dumps({"ociVersion": "1.0.2", "linux": linux}).encode()


@pytest.mark.root
def test_bundle_is_shared_with_the_mapped_root_group(tmp_path: Path) -> None:
    mapped = new_bundle(tmp_path / "state", tmp_path / "root", "ns", "userns", _spec(100000))
    plain = new_bundle(tmp_path / "state", tmp_path / "root", "ns", "plain", _spec(None))
    try:
        st = os.stat(mapped.path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 100000, 0o710)
        st = os.stat(plain.path)
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
    finally:
        mapped.delete()
        plain.delete()


def test_pyctr_task_options_keep_the_containers_own() -> None:
    # The runc options pyctr sends for a user namespace keep the container's own options.
    from pycontainerd.api.containerd.types.runc.options import oci_pb2
    from pycontainerd.cli._userns import task_options

    spec = {"linux": {"uidMappings": [{"containerID": 0, "hostID": 7, "size": 1}], "gidMappings": []}}
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 9, "size": 1}]
    own = oci_pb2.Options(binary_name="crun").SerializeToString()
    record = Container(
        "c",
        Runtime("io.containerd.runc.v2", AnyValue("containerd.runc.v1.Options", own)),
        spec=AnyValue("types.containerd.io/opencontainers/runtime-spec/1/Spec", json.dumps(spec).encode()),
    )
    options = task_options(record)
    assert options is not None
    parsed = oci_pb2.Options.FromString(options.value)
    assert (parsed.binary_name, parsed.io_uid, parsed.io_gid) == ("crun", 7, 9)
    assert task_options(Container("c", Runtime("x"))) is None
