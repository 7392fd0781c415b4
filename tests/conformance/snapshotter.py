"""Conformance suite for snapshotter backends (namespace-free, like containerd's
``core/snapshots/testsuite``).

Use it by subclassing with a name pytest collects and providing the factory::

    class TestOverlay(SnapshotterSuite):
        def make_snapshotter(self, root: Path) -> Snapshotter:
            return OverlaySnapshotter(root)

``make_snapshotter`` may be called twice with the same root (the reopen test); set
``persistent = False`` for a backend whose state does not survive that. Tests marked
``root`` really mount what the snapshotter returns (via ``pycontainerd.snapshots.mount``)
and check the files seen at every layer; every mount is undone in a ``finally`` block, and a
fixture lazily detaches anything still mounted under the test's directory.

A wrapper with another calling convention (the namespaced snapshotter takes a context
first) passes by adapting it to :class:`~pycontainerd.core.snapshots.Snapshotter`.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from pycontainerd.core.snapshots import Info, Kind, Mount, Snapshotter, Usage
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.snapshots.mount import PAGE_SIZE, mount_all, unmount, unmount_all

GC_ROOT = {"containerd.io/gc.root": "suite"}
Apply = Callable[[Path], None]


# -- filesystem helpers -------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a directory shows: type, permission bits, owner, content or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                detail: object = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                detail = st.st_rdev
            else:
                detail = None
            out[str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return out


def write(root: Path, rel: str, data: str, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    p.chmod(mode)


def remove(root: Path, rel: str) -> None:
    p = root / rel
    if p.is_dir() and not p.is_symlink():
        for child in sorted(p.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
        p.rmdir()
    else:
        p.unlink()


def mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    prefix = str(base).rstrip("/") + "/"
    return [p for p in points if p.startswith(prefix)]


@contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    """``mounts`` mounted on ``target`` for the duration of the block."""
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount_all(target)


class SnapshotterSuite:
    """Behaviour every snapshotter backend must show. Subclass and implement the factory."""

    persistent: ClassVar[bool] = True
    deep_chain_layers: ClassVar[int] = 200

    def make_snapshotter(self, root: Path) -> Snapshotter:
        raise NotImplementedError

    @pytest.fixture
    def sn(self, tmp_path: Path) -> Iterator[Snapshotter]:
        root = tmp_path / "root"
        root.mkdir()
        snapshotter = self.make_snapshotter(root)
        try:
            yield snapshotter
        finally:
            snapshotter.close()
            for point in reversed(mounts_under(tmp_path)):  # a failed test's leftovers
                unmount(point, lazy=True)

    @pytest.fixture
    def work(self, tmp_path: Path) -> Path:
        (tmp_path / "work").mkdir()
        return tmp_path / "work"

    # -- helpers ------------------------------------------------------------------------

    def layer(self, sn: Snapshotter, work: Path, name: str, parent: str, apply: Apply) -> str:
        """Prepare on ``parent``, mount, apply, unmount, commit as ``name``."""
        mounts = sn.prepare(f"{name}-active", parent, GC_ROOT)
        with mounted(mounts, work / f"{name}-mnt") as target:
            apply(target)
        sn.commit(name, f"{name}-active", GC_ROOT)
        return name

    def view_tree(self, sn: Snapshotter, work: Path, parent: str) -> dict[str, tuple[object, ...]]:
        key = f"view-of-{parent}"
        mounts = sn.view(key, parent)
        try:
            with mounted(mounts, work / key) as target:
                return tree(target)
        finally:
            sn.remove(key)

    def base_snapshots(self, sn: Snapshotter) -> None:
        """c1 <- c2 committed; a1 on c2, a2 alone active; v1 on c2, v2 alone views."""
        sn.prepare("c1-a", "", GC_ROOT)
        sn.commit("c1", "c1-a", GC_ROOT)
        sn.prepare("c2-a", "c1", GC_ROOT)
        sn.commit("c2", "c2-a", GC_ROOT)
        sn.prepare("a1", "c2", GC_ROOT)
        sn.prepare("a2", "", GC_ROOT)
        sn.view("v1", "c2", GC_ROOT)
        sn.view("v2", "", GC_ROOT)

    # -- records (no mounts) ------------------------------------------------------------

    def test_stat_kinds_parents_and_times(self, sn: Snapshotter) -> None:
        t1 = time.time_ns()
        self.base_snapshots(sn)
        t2 = time.time_ns()
        expected = {
            "c1": (Kind.COMMITTED, ""),
            "c2": (Kind.COMMITTED, "c1"),
            "a1": (Kind.ACTIVE, "c2"),
            "a2": (Kind.ACTIVE, ""),
            "v1": (Kind.VIEW, "c2"),
            "v2": (Kind.VIEW, ""),
        }
        for name, (kind, parent) in expected.items():
            info = sn.stat(name)
            assert (info.name, info.kind, info.parent) == (name, kind, parent)
            assert t1 <= info.created_at <= t2
            assert info.updated_at == info.created_at
            assert info.labels == GC_ROOT
        for gone in ("c1-a", "c2-a"):
            with pytest.raises(NotFound):
                sn.stat(gone)

    def test_walk_lists_every_snapshot(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        walked = {i.name: i for i in sn.walk()}
        assert sorted(walked) == ["a1", "a2", "c1", "c2", "v1", "v2"]
        for name, info in walked.items():
            assert info == sn.stat(name)

    def test_unknown_keys(self, sn: Snapshotter) -> None:
        for call in (sn.stat, sn.usage, sn.mounts, sn.remove):
            with pytest.raises(NotFound):
                call("nope")
        with pytest.raises(NotFound):
            sn.update(Info("nope", Kind.ACTIVE, labels={"a": "b"}))
        with pytest.raises(NotFound):
            sn.commit("x", "nope")

    def test_parent_must_exist_and_be_committed(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        with pytest.raises(NotFound):
            sn.prepare("k", "missing")
        for parent in ("a1", "v1"):
            with pytest.raises(FailedPrecondition, match="not committed"):
                sn.prepare("k", parent)
            with pytest.raises(FailedPrecondition, match="not committed"):
                sn.view("k", parent)
        with pytest.raises(NotFound):
            sn.stat("k")

    def test_taken_keys(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        for key in ("a1", "v1", "c1"):
            with pytest.raises(AlreadyExists):
                sn.prepare(key, "c2")
            with pytest.raises(AlreadyExists):
                sn.view(key, "c2")
        with pytest.raises(AlreadyExists):
            sn.commit("c1", "a2")
        assert sn.stat("a2").kind == Kind.ACTIVE

    def test_commit_rules(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        with pytest.raises(FailedPrecondition):
            sn.commit("v1-committed", "v1")
        with pytest.raises(FailedPrecondition):
            sn.commit("c3", "c1")
        assert sn.stat("v1").kind == Kind.VIEW
        before = time.time_ns()
        sn.commit("c3", "a1", {"fresh": "yes"})
        info = sn.stat("c3")
        # The active snapshot's labels are replaced, not merged; timestamps restart.
        assert (info.kind, info.parent, info.labels) == (Kind.COMMITTED, "c2", {"fresh": "yes"})
        assert info.created_at >= before
        with pytest.raises(NotFound):
            sn.stat("a1")
        with pytest.raises(FailedPrecondition):
            sn.mounts("c3")

    def test_remove_refuses_parents(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        for busy in ("c1", "c2"):
            with pytest.raises(FailedPrecondition):
                sn.remove(busy)
        for key in ("a1", "v1", "c2", "c1", "a2", "v2"):
            sn.remove(key)
        assert list(sn.walk()) == []

    def test_removed_keys_can_be_reused(self, sn: Snapshotter) -> None:
        sn.prepare("committed-a", "", GC_ROOT)
        sn.commit("committed-1", "committed-a", GC_ROOT)
        sn.prepare("reuse-1", "committed-1", GC_ROOT)
        sn.remove("reuse-1")
        sn.view("reuse-1", "committed-1", GC_ROOT)
        sn.remove("reuse-1")
        sn.prepare("reuse-1", "", GC_ROOT)
        sn.remove("committed-1")
        sn.commit("committed-1", "reuse-1", GC_ROOT)
        assert sn.stat("committed-1").parent == ""

    def test_update_labels(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        for name in ("c1", "c2", "a1", "a2", "v1", "v2"):
            st = sn.stat(name)
            expected = {"l1": "v1", "l2": "v2", "l3": "v3", **GC_ROOT}
            u1 = time.time_ns()
            # Only labels change; a new parent or kind in the Info is ignored.
            got = sn.update(Info(name, Kind.UNKNOWN, "doesnotexist", expected))
            u2 = time.time_ns()
            assert (got.name, got.kind, got.parent, got.created_at) == (name, st.kind, st.parent, st.created_at)
            assert u1 <= got.updated_at <= u2
            assert got.labels == expected
            assert sn.stat(name).labels == expected

            got = sn.update(Info(name, st.kind, labels={"l1": "updated", "l4": "v4"}), ["labels.l1", "labels.l2"])
            assert got.labels == {"l1": "updated", "l3": "v3", **GC_ROOT}

            got = sn.update(Info(name, st.kind, labels={"l4": "v4", **GC_ROOT}), ["labels"])
            assert got.labels == {"l4": "v4", **GC_ROOT}
            assert sn.stat(name).labels == got.labels

            for path in ("parent", "kind", "name", "created_at"):
                with pytest.raises(InvalidArgument):
                    sn.update(Info(name, st.kind, "doesnotexist", {"x": "y"}), [path])
            assert sn.stat(name).labels == got.labels

    def test_keys_are_opaque_strings(self, sn: Snapshotter) -> None:
        # The namespaced wrapper uses keys like "<ns>/<n>/<key>"; paths, spaces, unicode pass through.
        keys = ["default/17/sha256:abc", "/tmp/work/preparing", "with space", "ünï"]
        for key in keys:
            sn.prepare(key, "")
            sn.commit(f"{key}@c", key)
            sn.view(key, f"{key}@c")
            assert sn.stat(key).parent == f"{key}@c"
        assert {i.name for i in sn.walk()} == {*keys, *(f"{k}@c" for k in keys)}

    def test_mounts_are_stable(self, sn: Snapshotter) -> None:
        self.base_snapshots(sn)
        assert sn.mounts("a2") == sn.mounts("a2")
        prepared = sn.prepare("a3", "c2")
        assert sn.mounts("a3") == prepared
        assert len(prepared) >= 1

    def test_usage_of_active_and_committed(self, sn: Snapshotter) -> None:
        mounts = sn.prepare("a", "")
        assert len(mounts) == 1 and mounts[0].type == "bind", "a snapshot without parent is a bind mount"
        src = Path(mounts[0].source)
        empty = sn.usage("a")
        assert empty.inodes == 1
        write(src, "dir/file", "x" * 10000)
        write(src, "other", "y")
        os.link(src / "other", src / "dir/hardlink")
        os.symlink("other", src / "symlink")
        usage = sn.usage("a")
        seen = {(p.lstat().st_ino): p.lstat().st_blocks * 512 for p in [src, *src.rglob("*")]}
        assert usage == Usage(size=sum(seen.values()), inodes=5)
        assert usage.size >= 10001
        sn.commit("c", "a")
        assert sn.usage("c") == usage

    def test_close_twice(self, sn: Snapshotter) -> None:
        sn.prepare("p", "")
        sn.commit("c", "p")
        sn.remove("c")
        sn.close()
        sn.close()

    def test_reopen_keeps_snapshots(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("backend is not persistent")
        root = tmp_path / "reopen"
        root.mkdir()
        first = self.make_snapshotter(root)
        self.base_snapshots(first)
        before = {i.name: i for i in first.walk()}
        mounts = first.mounts("a1")
        first.close()
        second = self.make_snapshotter(root)
        try:
            assert {i.name: i for i in second.walk()} == before
            assert second.mounts("a1") == mounts
            second.prepare("after-reopen", "c2")
            assert second.stat("after-reopen").parent == "c2"
        finally:
            second.close()

    # -- through real mounts (root) -----------------------------------------------------

    @pytest.mark.root
    def test_files_visible_at_each_layer(self, sn: Snapshotter, work: Path) -> None:
        def base(t: Path) -> None:
            write(t, "foo", "foo\n", 0o777)
            (t / "a/b/c").mkdir(parents=True)

        def diff(t: Path) -> None:
            write(t, "bar", "bar\n", 0o777)
            write(t, "foo", "bar\n", 0o777)
            remove(t, "a/b")

        flat = work / "flat"
        flat.mkdir()
        self.layer(sn, work, "base", "", base)
        base(flat)
        assert self.view_tree(sn, work, "base") == tree(flat)
        mounts = sn.prepare("next", "base", GC_ROOT)
        with mounted(mounts, work / "next") as target:
            assert tree(target) == tree(flat)
            diff(target)
        sn.commit("next-c", "next", GC_ROOT)
        diff(flat)
        assert self.view_tree(sn, work, "next-c") == tree(flat)
        assert self.view_tree(sn, work, "base") != tree(flat)  # lower layer untouched
        with pytest.raises(FailedPrecondition):
            sn.remove("base")
        sn.remove("next-c")
        sn.remove("base")

    @pytest.mark.root
    def test_views_are_read_only(self, sn: Snapshotter, work: Path) -> None:
        self.layer(sn, work, "one", "", lambda t: write(t, "f", "1"))
        self.layer(sn, work, "two", "one", lambda t: write(t, "g", "2"))
        for key, parent in (("v0", ""), ("v1", "one"), ("v2", "two")):
            with mounted(sn.view(key, parent), work / key) as target:
                with pytest.raises(OSError, match="Read-only file system") as info:
                    (target / "new").write_text("x")
                assert info.value.errno == 30  # EROFS
                assert not (target / "new").exists()

    @pytest.mark.root
    def test_root_permission(self, sn: Snapshotter, work: Path) -> None:
        with mounted(sn.prepare("p", ""), work / "p") as target:
            assert stat.S_IMODE(target.stat().st_mode) == 0o755

    @pytest.mark.root
    def test_deletions_in_upper_layers(self, sn: Snapshotter, work: Path) -> None:
        def l1(t: Path) -> None:
            write(t, "foo", "foo\n")
            write(t, "foobar", "foobar\n")
            write(t, "dir/keep", "k")
            write(t, "dir/sub/x", "x")

        def l2(t: Path) -> None:
            remove(t, "foobar")
            remove(t, "dir/sub")

        def l3(t: Path) -> None:
            (t / "dir/sub").mkdir()  # recreated empty: the old contents must stay hidden
            write(t, "foobar", "back")

        self.layer(sn, work, "l1", "", l1)
        self.layer(sn, work, "l2", "l1", l2)
        self.layer(sn, work, "l3", "l2", l3)
        t1, t2, t3 = (self.view_tree(sn, work, n) for n in ("l1", "l2", "l3"))
        assert {"foobar", "dir/sub", "dir/sub/x"} <= t1.keys()
        assert {"foobar", "dir/sub", "dir/sub/x"}.isdisjoint(t2)
        assert "dir/keep" in t2 and "foo" in t2
        assert "dir/sub" in t3 and "dir/sub/x" not in t3
        assert t3["foobar"][4] == b"back"

    @pytest.mark.root
    def test_move_and_link_from_lower_layer(self, sn: Snapshotter, work: Path) -> None:
        def l1(t: Path) -> None:
            write(t, "dir1/f1", "Hello")
            write(t, "dir2/f2", "...")

        def l2(t: Path) -> None:
            write(t, "dir3/f1", "Hello")
            remove(t, "dir1")
            os.link(t / "dir2/f2", t / "dir3/f2")
            remove(t, "dir2/f2")

        flat = work / "flat"
        flat.mkdir()
        for name, parent, apply in (("l1", "", l1), ("l2", "l1", l2)):
            self.layer(sn, work, name, parent, apply)
            apply(flat)
            assert self.view_tree(sn, work, name) == tree(flat)

    @pytest.mark.root
    def test_metadata_survives_layers(self, sn: Snapshotter, work: Path) -> None:
        def base(t: Path) -> None:
            write(t, "setuid", "#!/bin/sh\n")
            os.chown(t / "setuid", 1234, 5678)
            os.chmod(t / "setuid", 0o4755)  # after chown, which clears setuid
            os.setxattr(t / "setuid", "user.note", b"kept")
            os.symlink("setuid", t / "link")
            os.lchown(t / "link", 99, 98)
            write(t, "a", "shared")
            os.link(t / "a", t / "b")
            os.mkfifo(t / "fifo")
            os.mknod(t / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            (t / "d").mkdir(mode=0o700)
            os.chown(t / "d", 42, 43)

        def child(t: Path) -> None:
            os.chown(t / "a", 7, 8)  # a metadata-only change in the upper layer

        self.layer(sn, work, "base", "", base)
        self.layer(sn, work, "child", "base", child)
        seen = self.view_tree(sn, work, "child")
        assert seen["setuid"][1:4] == (0o4755, 1234, 5678)
        assert seen["link"][2:] == (99, 98, "setuid")
        assert stat.S_ISFIFO(int(seen["fifo"][0]))  # type: ignore[call-overload]
        assert seen["null"][0] == stat.S_IFCHR and seen["null"][4] == os.makedev(1, 3)
        assert seen["d"][1:4] == (0o700, 42, 43)
        assert seen["a"][2:4] == (7, 8) and seen["a"][4] == b"shared"
        with mounted(sn.view("xv", "child"), work / "xv") as target:
            assert os.getxattr(target / "setuid", "user.note") == b"kept"
        with mounted(sn.view("bv", "base"), work / "bv") as target:
            assert (target / "a").stat().st_ino == (target / "b").stat().st_ino

    @pytest.mark.root
    @pytest.mark.slow
    def test_deep_chain_mounts(self, sn: Snapshotter, work: Path) -> None:
        layers = self.deep_chain_layers

        def apply_layer(i: int) -> Apply:
            def apply(t: Path) -> None:
                if i == 0:
                    write(t, "bottom", "way at the bottom\n")
                    (t / "addhere").mkdir()
                write(t, "overwriteme", f"{i} WAS HERE!\n")
                write(t, f"addhere/file-{i}", "same\n")
                if (t / "onlyme").exists():
                    remove(t, "onlyme")
                write(t, f"onlyme/file-{i}", "only me!\n")

            return apply

        flat = work / "flat"
        flat.mkdir()
        parent = ""
        for i in range(layers):
            apply_layer(i)(flat)
            parent = self.layer(sn, work, f"layer-{i}", parent, apply_layer(i))
        mounts = sn.view("full", parent)
        if mounts[0].type == "overlay":
            # The point of the test: absolute lowerdirs do not fit in one page of options.
            assert sum(len(o) + 1 for o in mounts[0].options) > PAGE_SIZE
        with mounted(mounts, work / "full") as target:
            assert tree(target) == tree(flat)
            assert sorted(os.listdir(target / "onlyme")) == [f"file-{layers - 1}"]
        with mounted(sn.prepare("top", parent), work / "top") as target:
            write(target, "written-on-top", "ok")
            assert (target / "bottom").read_text() == "way at the bottom\n"
