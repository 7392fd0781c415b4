"""The conformance suite against the native snapshotter, plus its copy and layout details."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Snapshotter
from pycontainerd.snapshots.native import NativeSnapshotter, copy_tree
from tests.conformance.snapshotter import SnapshotterSuite, tree


class TestNative(SnapshotterSuite):
    # Each native layer is a full copy: 64 layers keep the file churn modest; overlay runs 200.
    deep_chain_layers = 64

    def make_snapshotter(self, root: Path) -> Snapshotter:
        return NativeSnapshotter(root)


def test_mount_shapes(tmp_path: Path) -> None:
    sn = NativeSnapshotter(tmp_path / "root")
    snaps = tmp_path / "root" / "snapshots"
    try:
        assert [(m.type, m.source, m.options) for m in sn.prepare("a", "")] == [("bind", f"{snaps}/1", ("rbind", "rw"))]
        sn.commit("c", "a")
        assert sn.prepare("b", "c")[0].source == f"{snaps}/2"
        # A view of a parent shares the parent's copy, read-only; it owns no directory.
        assert [(m.source, m.options) for m in sn.view("v", "c")] == [(f"{snaps}/1", ("rbind", "ro"))]
        assert sorted(os.listdir(snaps)) == ["1", "2"]
        sn.remove("v")
        sn.remove("b")
        assert sorted(os.listdir(snaps)) == ["1"]
    finally:
        sn.close()


def test_copy_tree_preserves_everything_unprivileged(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d/e").mkdir(parents=True)
    (src / "d/e/f").write_text("deep")
    (src / "exe").write_text("#!/bin/sh\n")
    os.chmod(src / "exe", 0o751)
    os.link(src / "exe", src / "d/exe-link")
    os.symlink("../exe", src / "d/sym")
    os.symlink("dangling", src / "dangling")
    os.mkfifo(src / "fifo", 0o640)
    os.setxattr(src / "exe", "user.k", b"v")
    os.chmod(src / "d/e", 0o500)
    os.utime(src / "d", ns=(1_000_000_000, 2_000_000_000))
    dst.mkdir()
    copy_tree(str(src), str(dst))
    assert tree(dst) == tree(src)
    assert (dst / "exe").stat().st_ino == (dst / "d/exe-link").stat().st_ino
    assert (dst / "exe").stat().st_ino != (src / "exe").stat().st_ino
    assert os.getxattr(dst / "exe", "user.k") == b"v"
    assert (dst / "d").stat().st_mtime_ns == 2_000_000_000
    assert stat.S_IMODE((dst / "d/e").stat().st_mode) == 0o500


@pytest.mark.root
def test_copy_tree_devices_and_owners(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    (src / "owned").write_text("x")
    os.chown(src / "owned", 1000, 2000)
    os.chmod(src / "owned", 0o6755)  # after chown, which clears setuid/setgid
    os.lchown(src, 5, 6)
    dst.mkdir()
    copy_tree(str(src), str(dst))
    assert tree(dst) == tree(src)
    assert (dst.stat().st_uid, dst.stat().st_gid) == (5, 6)
    assert stat.S_IMODE((dst / "owned").stat().st_mode) == 0o6755


def test_crash_leftovers_are_removed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sn = NativeSnapshotter(root)
    sn.prepare("a", "")
    sn.close()
    for leftover in ("new-abc", "removing-7", "99"):
        (root / "snapshots" / leftover / "x").mkdir(parents=True)
    sn = NativeSnapshotter(root)
    try:
        assert sorted(os.listdir(root / "snapshots")) == ["1"]
        assert sn.cleanup() == []
    finally:
        sn.close()
