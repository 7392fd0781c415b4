"""The conformance suite against the overlayfs snapshotter, plus its mount shapes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Snapshotter
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.snapshots.overlay import UPPERDIR_LABEL, OverlaySnapshotter, unsupported_reason
from tests.conformance.snapshotter import GC_ROOT, SnapshotterSuite, mounted, remove, write


class TestOverlay(SnapshotterSuite):
    def make_snapshotter(self, root: Path) -> Snapshotter:
        return OverlaySnapshotter(root)


@pytest.fixture
def sn(tmp_path: Path) -> Iterator[OverlaySnapshotter]:
    s = OverlaySnapshotter(tmp_path / "root")
    yield s
    s.close()


def test_mount_shapes(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    def fs(i: int) -> str:
        return f"{tmp_path}/root/snapshots/{i}/fs"

    assert [(m.type, m.source, m.options) for m in sn.prepare("a1", "")] == [("bind", fs(1), ("rw", "rbind"))]
    sn.commit("c1", "a1")
    assert [(m.type, m.source, m.options) for m in sn.view("v0", "")] == [("bind", fs(2), ("ro", "rbind"))]
    # A view of one layer is that layer, bound read-only.
    assert [(m.type, m.source, m.options) for m in sn.view("v1", "c1")] == [("bind", fs(1), ("ro", "rbind"))]
    active = sn.prepare("a2", "c1")
    assert [(m.type, m.source) for m in active] == [("overlay", "overlay")]
    assert active[0].options[:3] == (
        f"workdir={tmp_path}/root/snapshots/4/work",
        f"upperdir={fs(4)}",
        f"lowerdir={fs(1)}",
    )
    sn.commit("c2", "a2")
    view = sn.view("v2", "c2")
    # Closest parent first; no upperdir: read-only overlay.
    assert view[0].options[0] == f"lowerdir={fs(4)}:{fs(1)}"
    assert not any(o.startswith(("upperdir=", "workdir=")) for o in view[0].options)
    if os.path.exists("/sys/module/overlay/parameters/index"):
        assert view[0].options[-1] == "index=off"
    assert all(m.chdir == "" for m in (*active, *view))
    # Views own an empty fs dir and no workdir.
    assert sorted(os.listdir(f"{tmp_path}/root/snapshots/5")) == ["fs"]


def test_configured_mount_options(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path / "root", mount_options=["index=on", "metacopy=off"])
    try:
        # No index=off after a configured index=on; userxattr only inside a user namespace.
        assert [o for o in s.options if o != "userxattr"] == ["index=on", "metacopy=off"]
        s.prepare("a", "")
        s.commit("c", "a")
        assert s.prepare("b", "c")[0].options[-len(s.options) :] == s.options
        assert s.prepare("bind", "")[0].options == ("rw", "rbind")  # never on bind mounts
    finally:
        s.close()


def test_upperdir_label(tmp_path: Path) -> None:
    s = OverlaySnapshotter(tmp_path / "root", upperdir_label=True)
    try:
        s.prepare("a", "", {"x": "1"})
        upper = f"{tmp_path}/root/snapshots/1/fs"
        assert s.stat("a").labels == {"x": "1", UPPERDIR_LABEL: upper}
        assert next(iter(s.walk())).labels[UPPERDIR_LABEL] == upper
        # Round-tripping a stat'ed Info does not store the computed label.
        info = s.update(s.stat("a"))
        assert info.labels == {"x": "1", UPPERDIR_LABEL: upper}
        s.close()
        assert OverlaySnapshotter(tmp_path / "root").stat("a").labels == {"x": "1"}
    finally:
        s.close()


def test_root_with_option_separators_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        OverlaySnapshotter(tmp_path / "a:b")


@pytest.mark.root
def test_supported_here(tmp_path: Path) -> None:
    assert unsupported_reason(tmp_path / "root") is None
    assert os.listdir(tmp_path / "root") == []  # the check cleans up after itself


@pytest.mark.root
def test_whiteouts_and_opaque_dirs_in_upper(sn: OverlaySnapshotter, tmp_path: Path) -> None:
    base = sn.prepare("base-a", "")
    with mounted(base, tmp_path / "m0") as t:
        write(t, "gone", "x")
        write(t, "dir/old", "x")
    sn.commit("base", "base-a")
    upper = tmp_path / "root/snapshots/2/fs"
    with mounted(sn.prepare("top", "base", GC_ROOT), tmp_path / "m1") as t:
        remove(t, "gone")
        remove(t, "dir")
        (t / "dir").mkdir()
        write(t, "dir/new", "y")
        # What the kernel wrote into the layer is what the differ will turn into a tar.
        st = (upper / "gone").lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
        assert os.getxattr(upper / "dir", "trusted.overlay.opaque") == b"y"
        assert sorted(os.listdir(t / "dir")) == ["new"]
    assert sn.usage("top").inodes == 4  # fs, the whiteout, dir, dir/new
