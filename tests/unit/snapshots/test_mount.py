"""Mount option parsing, lowerdir compaction, and real mounts through the helpers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Mount
from pycontainerd.snapshots import mount as mnt
from tests.conformance.snapshotter import mounts_under


def test_parse_options() -> None:
    assert mnt.parse_options(["rbind", "ro"]) == (mnt.MS_BIND | mnt.MS_REC | mnt.MS_RDONLY, "")
    assert mnt.parse_options(["ro", "rw", "nosuid", "lowerdir=/a:/b", "index=off"]) == (
        mnt.MS_NOSUID,
        "lowerdir=/a:/b,index=off",
    )
    assert mnt.parse_options(["rprivate"]) == (mnt.MS_PRIVATE | mnt.MS_REC, "")


def test_compact_lowerdir() -> None:
    dirs = [f"/var/lib/x/snapshots/{i}/fs" for i in (123, 12, 1)]
    m = Mount("overlay", "overlay", ("workdir=/w", f"lowerdir={':'.join(dirs)}", "upperdir=/u", "index=off"))
    c = mnt.compact_lowerdir(m)
    # Component-wise common dir: not "/var/lib/x/snapshots/1" although every path starts with it.
    assert c.chdir == "/var/lib/x/snapshots"
    assert c.options == ("workdir=/w", "upperdir=/u", "index=off", "lowerdir=123/fs:12/fs:1/fs")
    for unchanged in (
        Mount("overlay", "overlay", ("lowerdir=/only/one",)),
        Mount("overlay", "overlay", ("lowerdir=/a/x:/b/y",)),  # nothing in common but "/"
        Mount("overlay", "overlay", ("lowerdir=rel/a:rel/b",), chdir="/somewhere"),
        Mount("bind", "/src", ("rbind",)),
    ):
        assert mnt.compact_lowerdir(unchanged) is unchanged
    same = mnt.compact_lowerdir(Mount("overlay", "overlay", ("lowerdir=/s/1/fs:/s/1/fs",)))
    assert (same.chdir, same.options) == ("/s/1", ("lowerdir=fs:fs",))


@pytest.mark.root
def test_bind_ro_rw_and_unmount_all(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    (src / "f").write_text("hello")
    try:
        mnt.mount(Mount("bind", str(src), ("ro", "rbind")), target)
        assert (target / "f").read_text() == "hello"
        with pytest.raises(OSError, match="Read-only file system") as info:
            (target / "g").write_text("x")
        assert info.value.errno == errno.EROFS
        mnt.mount(Mount("bind", str(src), ("rw", "rbind")), target)  # stacked on top
        (target / "g").write_text("x")
        assert mounts_under(tmp_path) == [str(target), str(target)]
    finally:
        mnt.unmount_all(target)
    assert mounts_under(tmp_path) == []
    mnt.unmount_all(target)  # not a mount point: fine
    mnt.unmount_all(tmp_path / "missing")


@pytest.mark.root
def test_mount_all_undoes_partial_work(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    bad = Mount("overlay", "overlay", (f"lowerdir={tmp_path}/nope:{tmp_path}/nope2",))
    with pytest.raises(OSError, match="No such file") as info:
        mnt.mount_all([Mount("bind", str(src), ("rbind", "rw")), bad], target)
    assert info.value.errno == errno.ENOENT
    assert "overlay" in str(info.value)
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_chdir_is_honoured_and_private_to_the_mount(tmp_path: Path) -> None:
    for name in ("l1", "l2", "m"):
        (tmp_path / name).mkdir()
    (tmp_path / "l1" / "one").write_text("1")
    (tmp_path / "l2" / "two").write_text("2")
    cwd = os.getcwd()
    m = Mount("overlay", "overlay", ("lowerdir=l2:l1",), chdir=str(tmp_path))
    try:
        mnt.mount(m, tmp_path / "m")
        assert sorted(os.listdir(tmp_path / "m")) == ["one", "two"]
        assert os.getcwd() == cwd
    finally:
        mnt.unmount_all(tmp_path / "m")


def test_oversized_options_are_refused_not_truncated(tmp_path: Path) -> None:
    # mount(2) silently cuts data at one page; a cut lowerdir can still name real directories.
    huge = Mount("tmpfs", "tmpfs", ("x=" + "a" * mnt.PAGE_SIZE,))
    with pytest.raises(OSError, match="exceed one page") as info:
        mnt.mount(huge, tmp_path)
    assert info.value.errno == errno.E2BIG
