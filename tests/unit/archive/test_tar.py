"""Applying layers: normal trees, whiteouts, and a table of escape attempts."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pycontainerd.archive.rootpath import clean_name, resolve
from pycontainerd.archive.tar import MAX_HEADER, ApplyOptions, apply_tar
from pycontainerd.errdefs import InvalidArgument

Entry = tuple[str, str, bytes | str]  # (name, kind, data or link target)


def build(entries: list[Entry], *, pax: dict[str, str] | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o644
                if pax:
                    info.pax_headers = pax
                tf.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 1, 3, 0o666
            elif kind == "fifo":
                info.type, info.mode = tarfile.FIFOTYPE, 0o600
            tf.addfile(info)
    buf.seek(0)
    return buf


def tree(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def test_regular_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    stats = apply_tar(
        build(
            [
                ("bin/", "dir", b""),
                ("bin/busybox", "file", b"\x7fELF..."),
                ("bin/sh", "symlink", "busybox"),
                ("bin/ls", "hardlink", "bin/busybox"),
                ("tmp/pipe", "fifo", b""),
                ("deep/a/b/c.txt", "file", b"no parent entries"),
            ]
        ),
        root,
    )
    assert (root / "bin/busybox").read_bytes() == b"\x7fELF..."
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "bin/ls").stat().st_ino == (root / "bin/busybox").stat().st_ino
    assert stat.S_ISFIFO((root / "tmp/pipe").lstat().st_mode)
    assert (root / "deep/a/b/c.txt").read_text() == "no parent entries"
    assert int((root / "bin/busybox").stat().st_mtime) == 1_600_000_000
    assert stats.entries == 6


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("dotdot", [("../../../escaped", "file", b"x")]),
        ("absolute", [("/escaped", "file", b"x")]),
        ("symlink-dir-absolute", [("evil", "symlink", "/"), ("evil/escaped", "file", b"x")]),
        ("symlink-dir-relative", [("evil", "symlink", "../../.."), ("evil/escaped", "file", b"x")]),
        ("symlink-chain", [("a", "symlink", "b"), ("b", "symlink", "../.."), ("a/escaped", "file", b"x")]),
        ("symlink-then-overwrite", [("escaped", "symlink", "/tmp/outside-target"), ("escaped", "file", b"x")]),
        # A directory used (and so remembered) as a parent, then replaced by a symlink out.
        (
            "dir-replaced-by-symlink",
            [("d/", "dir", b""), ("d/first", "file", b"x"), ("d", "symlink", "../../.."), ("d/escaped", "file", b"x")],
        ),
        (
            "parent-replaced-by-symlink",
            [("p/q/one", "file", b"x"), ("p", "symlink", "/"), ("p/q/escaped", "file", b"x")],
        ),
    ],
)
def test_breakouts_stay_inside(tmp_path: Path, name: str, entries: list[Entry]) -> None:
    outer = tmp_path / "outer"
    root = outer / "a" / "b" / "root"
    root.mkdir(parents=True)
    before = tree(outer)
    apply_tar(build(entries), root)
    outside = {p for p in tree(outer) - before if not p.startswith("a/b/root")}
    assert outside == set(), f"{name} wrote outside the root: {outside}"
    assert not Path("/escaped").exists()
    assert not Path("/tmp/outside-target").exists()
    # What was written landed inside the root.
    assert any(p.endswith("escaped") for p in tree(root)) or (root / "escaped").exists()


def test_hardlink_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("host file")
    with pytest.raises(InvalidArgument, match="hard link"):
        apply_tar(build([("link", "hardlink", "../secret")]), root)
    with pytest.raises(InvalidArgument, match="hard link"):
        apply_tar(build([("link", "hardlink", str(secret))]), root)
    assert secret.stat().st_nlink == 1


def test_hardlink_through_symlink_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("host")
    with pytest.raises(InvalidArgument):
        apply_tar(build([("dir", "symlink", ".."), ("link", "hardlink", "dir/secret")]), root)
    assert (tmp_path / "secret").stat().st_nlink == 1


def test_devices_skipped_by_default(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    stats = apply_tar(build([("dev/null", "chr", b"")]), root)
    assert not (root / "dev/null").exists()
    assert stats.skipped == ["dev/null"]


def test_huge_pax_header_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = build([("f", "file", b"x")], pax={"comment": "y" * (MAX_HEADER + 10)})
    with pytest.raises(InvalidArgument, match="pax header"):
        apply_tar(data, root)


def test_trusted_xattrs_dropped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply_tar(build([("f", "file", b"x")], pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}), root)
    with pytest.raises(OSError):  # noqa: PT011 - ENODATA
        os.getxattr(root / "f", "trusted.overlay.opaque")


def test_whiteouts_remove_mode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply_tar(
        build([("a/keep", "file", b"1"), ("a/gone", "file", b"2"), ("b/old1", "file", b"3"), ("c", "file", b"")]), root
    )
    apply_tar(
        build(
            [
                ("a/.wh.gone", "file", b""),
                ("b/.wh..wh..opq", "file", b""),
                ("b/new", "file", b"4"),
                (".wh.c", "file", b""),
            ]
        ),
        root,
    )
    assert tree(root) == {"a", "a/keep", "b", "b/new"}


@pytest.mark.root
def test_whiteouts_overlay_mode(tmp_path: Path) -> None:
    root = tmp_path / "upper"
    root.mkdir()
    apply_tar(
        build([("a/.wh.gone", "file", b""), ("b/.wh..wh..opq", "file", b"")]), root, ApplyOptions(whiteouts="overlay")
    )
    st = (root / "a/gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert os.getxattr(root / "b", "trusted.overlay.opaque") == b"y"


def test_clean_name_and_resolve(tmp_path: Path) -> None:
    assert clean_name("/a/./b/../c") == "a/c"
    assert clean_name("../../x") == "x"
    (tmp_path / "d").mkdir()
    os.symlink("/d", tmp_path / "abs")
    assert resolve(str(tmp_path), "abs/f") == str(tmp_path / "d" / "f")
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(InvalidArgument, match="too many levels"):
        resolve(str(tmp_path), "loop/x")
