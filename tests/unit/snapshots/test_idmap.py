"""ID maps, ID-mapped mounts (overlay lowerdirs and binds), the overlay snapshotter's ``remap-ids``
behaviour, and the chown-remapped fallback."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Mount
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.snapshots import idmap, remap
from pycontainerd.snapshots import mount as mnt
from pycontainerd.snapshots.idmap import IDMap, IDRange
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter
from tests.conformance.snapshotter import mounted, mounts_under

HOST = 100000
SIZE = 65536
MAPPING = IDMap((IDRange(0, HOST, SIZE),), (IDRange(0, HOST, SIZE),))
LABELS = {idmap.UID_MAPPING_LABEL: f"0:{HOST}:{SIZE}", idmap.GID_MAPPING_LABEL: f"0:{HOST}:{SIZE}"}


# -- maps ---------------------------------------------------------------------------------


def test_parse_and_format() -> None:
    m = IDMap.parse("0:100000:1000,1000:200000:64536", "0:300000:65536")
    assert m.uids == (IDRange(0, 100000, 1000), IDRange(1000, 200000, 64536))
    assert (m.uidmap, m.gidmap) == ("0:100000:1000,1000:200000:64536", "0:300000:65536")
    assert m.mount_options() == ("uidmap=0:100000:1000,1000:200000:64536", "gidmap=0:300000:65536")
    assert IDMap.from_labels(m.labels()) == m
    assert IDMap.from_labels({"other": "x"}) is None
    assert m.root_pair() == (100000, 300000)
    assert (m.host_uid(999), m.host_uid(1000), m.host_gid(65535)) == (100999, 200000, 365535)
    oci = [{"containerID": 0, "hostID": 7, "size": 3}]
    assert IDMap.from_oci(oci, oci) == IDMap((IDRange(0, 7, 3),), (IDRange(0, 7, 3),))


@pytest.mark.parametrize(
    ("uidmap", "gidmap"),
    [
        ("0:1:1", ""),  # both are needed
        ("", "0:1:1"),
        ("0:1", "0:1:1"),
        ("a:1:1", "0:1:1"),
        ("0:1:0", "0:1:1"),  # empty range
        ("-1:1:1", "0:1:1"),
        ("0:4294967295:1", "0:1:1"),
        ("0:4294967290:10", "0:1:1"),  # overflows
    ],
)
def test_bad_maps(uidmap: str, gidmap: str) -> None:
    with pytest.raises(InvalidArgument):
        IDMap.parse(uidmap, gidmap)


def test_unmapped_ids() -> None:
    with pytest.raises(InvalidArgument, match="container UID 65536"):
        MAPPING.host_uid(SIZE)
    with pytest.raises(InvalidArgument, match="GID 0"):
        IDMap((IDRange(0, 1, 1),), (IDRange(1, 1, 1),)).root_pair()


def test_remapped_snapshot_key_is_containerds() -> None:
    # containerd 2.x: digest of the Go JSON of remappedSnapshot{Parent, IDMap}, ranges sorted.
    unsorted = IDMap((IDRange(1000, 7, 1), IDRange(0, 5, 1000)), (IDRange(0, 9, 10),))
    text = (
        '{"Parent":"sha256:abc","IDMap":{"UidMap":[{"containerID":0,"hostID":5,"size":1000},'
        '{"containerID":1000,"hostID":7,"size":1}],"GidMap":[{"containerID":0,"hostID":9,"size":10}]}}'
    )
    assert remap.remapped_snapshot_key("sha256:abc", unsorted) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    key = remap.remapped_snapshot_key("p", MAPPING)
    name, value = remap.keep_label("overlayfs", key)
    assert (name, value) == (f"containerd.io/gc.ref.snapshot.overlayfs/userns-{key[7:23]}", key)


def test_split_idmap_options() -> None:
    assert mnt.split_idmap_options(["ro", "uidmap=0:1:2", "gidmap=0:3:4", "rbind"]) == (
        "0:1:2",
        "0:3:4",
        ("ro", "rbind"),
    )
    assert mnt.split_idmap_options(["ro"]) == ("", "", ("ro",))


# -- user namespaces and ID-mapped mounts ---------------------------------------------------


@pytest.fixture
def lowers(tmp_path: Path) -> Iterator[Path]:
    """``snapshots/{1,2}/fs`` owned by root, as an image's layers are, plus upper/work/merged."""
    base = tmp_path / "sn"
    (base / "snapshots/1/fs/etc").mkdir(parents=True)
    (base / "snapshots/1/fs/etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (base / "snapshots/2/fs/bin").mkdir(parents=True)
    (base / "snapshots/2/fs/bin/tool").write_text("#!/bin/sh\n")
    for name in ("upper", "work", "merged"):
        (base / name).mkdir()
    yield base
    for point in reversed(mounts_under(tmp_path)):
        mnt.unmount(point, lazy=True)


@pytest.mark.root
def test_userns_fd_has_the_mapping() -> None:
    fd = idmap.userns_fd(IDMap((IDRange(0, HOST, SIZE), IDRange(SIZE, 300000, 10)), (IDRange(0, 7, 1),)))
    try:
        # A user namespace other than ours (its mapping shows through the ID-mapped mounts below).
        assert os.fstat(fd).st_ino != os.stat("/proc/self/ns/user").st_ino
        target = Path(tempfile.mkdtemp())
        try:
            clone = idmap.clone_idmapped(str(target), fd, recursive=False)
            os.close(clone)
        finally:
            target.rmdir()
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="gid_map"):
        idmap.userns_fd(IDMap((IDRange(0, 1, 10),), (IDRange(0, 1, 10), IDRange(5, 2, 10))))  # overlapping


@pytest.mark.root
def test_idmapped_overlay_shows_lowers_mapped_and_changes_nothing(lowers: Path, tmp_path: Path) -> None:
    os.chown(lowers / "upper", HOST, HOST)
    options = (
        f"workdir={lowers}/work",
        f"upperdir={lowers}/upper",
        f"lowerdir={lowers}/snapshots/2/fs:{lowers}/snapshots/1/fs",
        *MAPPING.mount_options(),
    )
    merged = lowers / "merged"
    assert mnt.mount(Mount("overlay", "overlay", options), merged) == 1
    try:
        st = os.stat(merged / "etc/passwd")
        assert (st.st_uid, st.st_gid) == (HOST, HOST)
        assert os.stat(merged / "bin/tool").st_uid == HOST
        # Only the overlay stays mounted: the temporary ID-mapped clones are gone already.
        assert mounts_under(tmp_path) == [str(merged)]
        assert [n for n in os.listdir(lowers) if n.startswith(".idmap-")] == []
        # Written as the mapped root (what a container's root is on the host): lands as such.
        os.chown(merged / "etc/passwd", HOST + 5, HOST + 5)  # a copy-up
        (merged / "new").write_text("x")
        os.chown(merged / "new", HOST, HOST)
    finally:
        mnt.unmount_all(merged)
    assert os.stat(lowers / "upper/etc/passwd").st_uid == HOST + 5
    assert os.stat(lowers / "upper/new").st_uid == HOST
    # The shared layers are never chowned.
    for path in ("snapshots/1/fs/etc/passwd", "snapshots/1/fs/etc", "snapshots/2/fs/bin/tool"):
        st = os.stat(lowers / path)
        assert (st.st_uid, st.st_gid) == (0, 0), path
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_idmapped_overlay_with_lowers_sharing_only_root(lowers: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "x").mkdir(parents=True)
    # /tmp/.../sn/snapshots/1/fs and /tmp/.../elsewhere share /tmp/...: one clone of that.
    options = (f"lowerdir={lowers}/snapshots/1/fs:{other}", *MAPPING.mount_options())
    with mounted([Mount("overlay", "overlay", options)], lowers / "merged") as merged:
        assert os.stat(merged / "x").st_uid == HOST
        assert os.stat(merged / "etc").st_uid == HOST
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_idmapped_bind_and_long_lowerdirs(lowers: Path, tmp_path: Path) -> None:
    target = tmp_path / "bind"
    target.mkdir()
    assert mnt.mount(Mount("bind", f"{lowers}/snapshots/1/fs", ("ro", "rbind", *MAPPING.mount_options())), target) == 2
    try:
        assert os.stat(target / "etc/passwd").st_uid == HOST
        with pytest.raises(OSError, match="Read-only") as info:
            (target / "nope").write_text("x")
        assert info.value.errno == errno.EROFS
    finally:
        mnt.unmount_all(target)
    assert mounts_under(tmp_path) == []
    # 200 layers: compacted relative to the temporary clone, still one page of options.
    dirs = []
    for i in range(3, 203):
        (lowers / f"snapshots/{i}/fs").mkdir(parents=True)
        dirs.append(f"{lowers}/snapshots/{i}/fs")
    options = ("lowerdir=" + ":".join([*dirs, f"{lowers}/snapshots/1/fs"]), *MAPPING.mount_options())
    with mounted([Mount("overlay", "overlay", options)], lowers / "merged") as merged:
        assert os.stat(merged / "etc/passwd").st_uid == HOST


@pytest.mark.root
def test_idmapped_mount_errors_leave_nothing(lowers: Path, tmp_path: Path) -> None:
    half = Mount("overlay", "overlay", (f"lowerdir={lowers}/snapshots/1/fs", "uidmap=0:1:1"))
    with pytest.raises(OSError, match="needs both") as info:
        mnt.mount(half, lowers / "merged")
    assert info.value.errno == errno.EINVAL
    options = (f"lowerdir={lowers}/snapshots/1/fs:{lowers}/missing", *MAPPING.mount_options())
    with pytest.raises(OSError, match="No such file"):
        mnt.mount(Mount("overlay", "overlay", options), lowers / "merged")
    assert mounts_under(tmp_path) == []
    assert [n for n in os.listdir(lowers) if n.startswith(".idmap-")] == []


@pytest.mark.root
def test_unsupported_reason(tmp_path: Path) -> None:
    assert idmap.unsupported_reason(tmp_path / "probe") is None  # ext4 / tmpfs on this kernel
    assert os.listdir(tmp_path / "probe") == []
    assert idmap.unsupported_reason("/proc/no/such") is not None


# -- the overlay snapshotter ----------------------------------------------------------------


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(tmp_path / "root", remap_ids=True)
    yield s
    s.close()


def _fs(sn: OverlaySnapshotter, i: int) -> str:
    return f"{sn.root}/snapshots/{i}/fs"


def test_overlay_mounts_carry_the_mapping(overlay: OverlaySnapshotter) -> None:
    assert overlay.capabilities == (idmap.CAPABILITY_REMAP_IDS, idmap.CAPABILITY_ONLY_REMAP_IDS)
    overlay.prepare("base", "")
    overlay.commit("layer", "base")
    active = overlay.prepare("c1", "layer", LABELS)
    assert active[0].type == "overlay"
    assert active[0].options[-2:] == MAPPING.mount_options()
    assert overlay.mounts("c1") == active  # labels are stored: Mounts says the same
    view = overlay.view("v1", "layer", LABELS)
    assert view == [Mount("bind", _fs(overlay, 1), ("ro", "rbind", *MAPPING.mount_options()))]
    # A snapshot of its own (no parent) is stored with host IDs: no mapping for its bind.
    assert overlay.prepare("empty", "", LABELS) == [Mount("bind", _fs(overlay, 4), ("rw", "rbind"))]
    assert overlay.prepare("plain", "layer")[0].options[-1] != MAPPING.mount_options()[-1]


@pytest.mark.root
def test_overlay_upper_is_owned_by_the_mapped_root(overlay: OverlaySnapshotter) -> None:
    overlay.prepare("base", "")
    overlay.commit("layer", "base")
    overlay.prepare("c1", "layer", LABELS)
    overlay.prepare("c2", "layer")
    overlay.prepare("empty", "", LABELS)
    assert os.stat(_fs(overlay, 2)).st_uid == HOST  # c1
    assert os.stat(_fs(overlay, 3)).st_uid == 0  # c2: like its parent
    assert os.stat(_fs(overlay, 4)).st_gid == HOST
    with pytest.raises(InvalidArgument):
        overlay.prepare("bad", "layer", {idmap.UID_MAPPING_LABEL: "0:1:1"})


def test_overlay_without_idmapped_mounts(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path / "root", slow_chown=True)
    try:
        assert s.capabilities == ()
        s.prepare("base", "")
        s.commit("layer", "base")
        assert not any(o.startswith("uidmap=") for o in s.prepare("c1", "layer", LABELS)[0].options)
    finally:
        s.close()


# -- the chown fallback ---------------------------------------------------------------------


@pytest.mark.root
def test_chown_tree_shifts_owners_keeps_modes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    tool = root / "bin/su"
    tool.write_text("x")
    os.chown(tool, 0, 42)
    os.chmod(tool, 0o4755)  # after chown, which clears it
    os.symlink("/etc/shadow", root / "link")  # must not be followed
    (root / "home").mkdir()
    os.chown(root / "home", 1000, 1000)
    assert remap.chown_tree(str(root), MAPPING) == 5
    assert (os.lstat(tool).st_uid, os.lstat(tool).st_gid) == (HOST, HOST + 42)
    assert stat.S_IMODE(os.lstat(tool).st_mode) == 0o4755
    assert os.lstat(root / "link").st_uid == HOST
    assert os.stat("/etc/shadow").st_uid == 0
    assert os.stat(root / "home").st_uid == HOST + 1000
    assert os.stat(root).st_uid == HOST
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 70000, 0)
    with pytest.raises(InvalidArgument, match="70000"):
        remap.chown_tree(str(other), MAPPING)


@pytest.mark.root
def test_remap_mounts_on_native(tmp_path: Path) -> None:
    sn = NativeSnapshotter(tmp_path / "native")
    try:
        mounts = sn.prepare("base", "")
        with mounted(mounts, tmp_path / "m") as m:
            (m / "f").write_text("x")
        sn.commit("layer", "base")
        key = remap.remapped_snapshot_key("layer", MAPPING)
        work = sn.prepare(key + remap.REMAP_SUFFIX, "layer")
        assert remap.remap_mounts(work, MAPPING) == 2
        sn.commit(key, key + remap.REMAP_SUFFIX)
        with mounted(sn.view("v", key), tmp_path / "m") as m:
            assert os.stat(m / "f").st_uid == HOST
        assert os.stat(f"{sn.root}/snapshots/1/f").st_uid == 0  # the image's layer is untouched
        assert [p for p in os.listdir("/tmp") if p.startswith("pycontainerd-remap-")] == []
    finally:
        sn.close()
    assert mounts_under(tmp_path) == []
