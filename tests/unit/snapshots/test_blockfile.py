"""The conformance suite against the blockfile snapshotter, plus its images, copies and loop mounts.

Images are small (64 MiB, sparse) ext4 files made by the tests; tests that mount them need
root. After every test, anything still mounted under its tmp dir is detached and the test
fails if a loop device is still attached to a file there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.core.snapshots import Mount, Snapshotter, Usage
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument
from pycontainerd.plugin.registration import InitContext, PluginSet, SkipPlugin
from pycontainerd.snapshots import blockfile, loopdev
from pycontainerd.snapshots import plugin as snapshot_plugins
from pycontainerd.snapshots.blockfile import BlockfileSnapshotter, copy_sparse, make_ext4_scratch, parse_size
from pycontainerd.snapshots.mount import mount_all, unmount
from tests.conformance.snapshotter import GC_ROOT, SnapshotterSuite, mounted, mounts_under, write

SIZE = "64MiB"

pytestmark = pytest.mark.skipif(
    shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None, reason="e2fsprogs is not installed"
)


def attached_under(base: Path) -> dict[str, str]:
    prefix = f"{base}/"
    return {dev: f for dev, f in loopdev.backing_files().items() if f.startswith(prefix)}


@pytest.fixture(autouse=True)
def _no_loop_left(tmp_path: Path) -> Iterator[None]:
    """Set up first, torn down last: after the test's own clean-up, nothing may stay attached."""
    yield
    for point in reversed(mounts_under(tmp_path)):
        unmount(point, lazy=True)
    deadline = time.monotonic() + 10
    while (left := attached_under(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for device in left:
        loopdev.detach(device)
    assert not left, f"loop devices left attached: {left}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scratch") / "ext4.img"
    make_ext4_scratch(path, parse_size(SIZE))
    return path


class TestBlockfile(SnapshotterSuite):
    # Every layer is an image copy plus an fsync: 64 layers keep the I/O modest.
    deep_chain_layers = 64

    @pytest.fixture(autouse=True)
    def _scratch(self, scratch: Path) -> None:
        self.scratch_file = str(scratch)

    def make_snapshotter(self, root: Path) -> Snapshotter:
        return BlockfileSnapshotter(root, scratch_file=self.scratch_file)

    def test_usage_of_active_and_committed(self, sn: Snapshotter) -> None:
        # The suite's version writes into a bind mount's source; an image is measured whole.
        assert isinstance(sn, BlockfileSnapshotter)
        mounts = sn.prepare("a", "")
        assert mounts[0].type == "ext4"
        image = Path(mounts[0].source)
        fresh = sn.usage("a")
        assert fresh == Usage(size=image.stat().st_blocks * 512, inodes=1)
        assert 0 < fresh.size < 8 << 20  # the holes of the scratch image stayed holes
        sn.commit("c", "a")
        assert sn.usage("c") == fresh
        sn.prepare("child", "c")
        assert sn.usage("child") == Usage(size=0, inodes=1)  # an exact copy adds nothing

    @pytest.mark.root
    def test_usage_grows_with_writes(self, sn: Snapshotter, work: Path) -> None:
        self.layer(sn, work, "base", "", lambda t: write(t, "small", "s"))
        mounts = sn.prepare("child", "base", GC_ROOT)
        with mounted(mounts, work / "child") as target:
            (target / "big").write_bytes(os.urandom(3 << 20))
        grown = sn.usage("child")
        assert grown.size >= 3 << 20
        sn.commit("child-c", "child")
        assert sn.usage("child-c") == grown


# -- mount shapes and the scratch image (no mounts) ---------------------------------------


def test_mount_shapes(tmp_path: Path, scratch: Path) -> None:
    sn = BlockfileSnapshotter(tmp_path / "root", scratch_file=str(scratch), mount_options=["sync"])
    snaps = tmp_path / "root" / "snapshots"
    try:
        assert sn.prepare("a", "") == [Mount("ext4", f"{snaps}/1/block", ("sync", "loop", "rw"))]
        sn.commit("c", "a")
        # A view of a parent mounts the parent's image read-only and owns no file.
        assert sn.view("v", "c") == [Mount("ext4", f"{snaps}/1/block", ("sync", "loop", "ro"))]
        assert sn.view("v0", "") == [Mount("ext4", f"{snaps}/3/block", ("sync", "loop", "ro"))]
        assert sn.prepare("b", "c") == [Mount("ext4", f"{snaps}/4/block", ("sync", "loop", "rw"))]
        assert sorted(os.listdir(snaps)) == ["1", "3", "4"]
        assert (snaps / "4/block").read_bytes() == (snaps / "1/block").read_bytes()
        for key in ("v", "v0", "b"):
            sn.remove(key)
        assert sorted(os.listdir(snaps)) == ["1"]
    finally:
        sn.close()


def test_scratch_is_made_on_first_use_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sn = BlockfileSnapshotter(root, scratch_size="32MiB")
    try:
        assert not (root / "scratch").exists()  # starting the plugin costs no mkfs
        sn.prepare("a", "")
        made = (root / "scratch").stat()
        assert made.st_size == 32 << 20
        assert made.st_blocks * 512 < 4 << 20
    finally:
        sn.close()
    # Empty: no lost+found (it would show up in every diff); root directory 0755.
    listing = subprocess.run(
        ["debugfs", "-R", "ls -l /", str(root / "scratch")], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split("\n")
    names = [line.split()[-1] for line in listing if line.strip()]
    assert names == [".", ".."]
    assert "40755" in listing[0]
    sn = BlockfileSnapshotter(root, scratch_size="32MiB")
    sn.prepare("b", "")
    sn.close()
    assert (root / "scratch").stat().st_ino == made.st_ino
    sn = BlockfileSnapshotter(root, scratch_size="16MiB", recreate_scratch=True)
    sn.prepare("c", "")
    sn.close()
    assert (root / "scratch").stat().st_size == 16 << 20


def test_scratch_file_is_copied_at_start(tmp_path: Path, scratch: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "scratch.tmp-deadbeef").write_text("a crash leftover")
    BlockfileSnapshotter(root, scratch_file=str(scratch)).close()
    assert (root / "scratch").read_bytes() == scratch.read_bytes()
    assert sorted(os.listdir(root)) == ["metadata.db", "scratch", "snapshots"]


def test_copy_sparse_keeps_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(100 << 20)
        f.write(b"middle" * 1000)
        f.truncate(300 << 20)  # a trailing hole
    copy_sparse(src, dst)
    assert dst.stat().st_size == src.stat().st_size
    assert dst.stat().st_blocks <= src.stat().st_blocks + 64
    with open(dst, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(100 << 20)
        assert f.read(6000) == b"middle" * 1000
    with pytest.raises(FileExistsError):
        copy_sparse(src, dst)


def test_parse_size() -> None:
    assert parse_size("10GiB") == 10 << 30
    assert parse_size("512M") == 512 << 20
    assert parse_size("64mb") == 64 << 20
    assert parse_size(" 4096 ") == 4096
    for bad in ("", "0", "ten", "1.5G", "-1G", "3PiB"):
        with pytest.raises(InvalidArgument):
            parse_size(bad)


def test_without_mkfs_or_scratch_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FailedPrecondition, match="only ext4"):
        BlockfileSnapshotter(tmp_path / "x", fs_type="xfs")
    reg = snapshot_plugins.BLOCKFILE_REGISTRATION
    config = snapshot_plugins.BlockfileConfig(fs_type="xfs")
    with pytest.raises(SkipPlugin, match="skip plugin: no scratch_file configured, and only ext4"):
        reg.init(InitContext(reg, tmp_path / reg.uri, tmp_path / "state", config, PluginSet()))
    monkeypatch.setattr(blockfile.shutil, "which", lambda name: None)
    with pytest.raises(SkipPlugin, match=r"mkfs.ext4 \(e2fsprogs\) is not installed"):
        reg.init(InitContext(reg, tmp_path / reg.uri, tmp_path / "state", None, PluginSet()))
    # A configured scratch file needs no tools.
    assert blockfile.missing_tools("xfs", "/some/xfs.img") is None


def test_plugin_config(tmp_path: Path, scratch: Path) -> None:
    reg = snapshot_plugins.BLOCKFILE_REGISTRATION
    assert reg.config is snapshot_plugins.BlockfileConfig
    config = snapshot_plugins.BlockfileConfig(scratch_file=str(scratch), mount_options=["loop", "direct-io"])
    ctx = InitContext(reg, tmp_path / reg.uri, tmp_path / "state", config, PluginSet())
    sn = reg.init(ctx)
    try:
        assert isinstance(sn, BlockfileSnapshotter)
        assert ctx.exports == {"root": str(tmp_path / reg.uri)}
        assert ctx.on_close == [sn.close]
        assert sn.prepare("a", "")[0].options == ("loop", "direct-io", "rw")
    finally:
        sn.close()
    assert [r.id for r in snapshot_plugins.REGISTRATIONS] == ["overlayfs", "native", "btrfs", "blockfile"]


# -- loop mounts (root) -------------------------------------------------------------------


@pytest.mark.root
def test_loop_devices_go_with_the_mount(tmp_path: Path, scratch: Path) -> None:
    sn = BlockfileSnapshotter(tmp_path / "root", scratch_file=str(scratch))
    try:
        mounts = sn.prepare("a", "")
        target = tmp_path / "mnt"
        with mounted(mounts, target):
            assert list(attached_under(tmp_path).values()) == [mounts[0].source]
            write(target, "f", "in the image")
        assert attached_under(tmp_path) == {}
        # A mount that fails (wrong filesystem type) releases its loop device at once.
        with pytest.raises(OSError, match="loop device for"):
            mount_all([Mount("btrfs", mounts[0].source, ("loop",))], target)
        assert attached_under(tmp_path) == {}
        # direct-io is a loop setting, not an ext4 option.
        with mounted([Mount("ext4", mounts[0].source, ("loop", "direct-io", "ro"))], target):
            assert (target / "f").read_text() == "in the image"
            (device,) = attached_under(tmp_path)
            name = device.removeprefix("/dev/")
            assert Path(f"/sys/block/{name}/loop/dio").read_text().strip() == "1"
            assert Path(f"/sys/block/{name}/ro").read_text().strip() == "1"
    finally:
        sn.close()
