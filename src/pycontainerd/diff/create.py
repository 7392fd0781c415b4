"""Create a layer: the tar of what changed from one directory tree to another.

A double walk over ``lower`` and ``upper`` (containerd's ``archive.WriteDiff``): entries new or
changed in upper are written; entries gone from upper become ``.wh.<name>`` whiteouts (only
the topmost of a removed subtree). Two entries are the same when type, mode, owner, size,
mtime, link target and xattrs agree. Output is deterministic: names sorted, one pass.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import IO

from pycontainerd.archive.tar import WHITEOUT_PREFIX

COPY_CHUNK = 1 << 20


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith("trusted.") or name == "security.selinux":
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
        except OSError:
            continue
    return out


def _same(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return _xattrs(pa) == _xattrs(pb)
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev == b.st_rdev
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and _xattrs(pa) == _xattrs(pb)


class _Writer:
    def __init__(self, out: IO[bytes]) -> None:
        self.tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.links: dict[tuple[int, int], str] = {}

    def add(self, path: str, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns / 1e9
        xattrs = _xattrs(path)
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            self.tf.addfile(info)
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self.tf.addfile(info)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
                self.tf.addfile(info)
                return
            self.links[key] = name
            info.size = st.st_size
            with open(path, "rb") as fh:
                self.tf.addfile(info, fh)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
            self.tf.addfile(info)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tf.addfile(info)

    def whiteout(self, name: str) -> None:
        parent, _, base = name.rpartition("/")
        info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else f"{WHITEOUT_PREFIX}{base}")
        info.mode = 0o644
        self.tf.addfile(info)

    def close(self) -> None:
        self.tf.close()


def _walk(writer: _Writer, lower: str | None, upper: str, rel: str) -> None:
    upper_dir = os.path.join(upper, rel) if rel else upper
    lower_dir = (os.path.join(lower, rel) if rel else lower) if lower is not None else None
    upper_names = sorted(os.listdir(upper_dir))
    lower_names: list[str] = []
    if lower_dir is not None and os.path.isdir(lower_dir) and not os.path.islink(lower_dir):
        lower_names = sorted(os.listdir(lower_dir))
    for name in sorted(set(lower_names) - set(upper_names)):
        writer.whiteout(f"{rel}/{name}" if rel else name)
    for name in upper_names:
        child = f"{rel}/{name}" if rel else name
        upath = os.path.join(upper_dir, name)
        ust = os.lstat(upath)
        lst = None
        lpath = os.path.join(lower_dir, name) if lower_dir is not None else ""
        if lower_dir is not None and name in lower_names:
            lst = os.lstat(lpath)
        if lst is None or not _same(lst, ust, lpath, upath):
            writer.add(upath, child, ust)
        if stat.S_ISDIR(ust.st_mode):
            same_kind_below = lst is not None and stat.S_ISDIR(lst.st_mode)
            _walk(writer, lower if same_kind_below else None, upper, child)


def write_diff(out: IO[bytes], lower: str, upper: str) -> None:
    """Write the uncompressed tar of changes from ``lower`` to ``upper`` into ``out``."""
    writer = _Writer(out)
    try:
        _walk(writer, lower, upper, "")
    finally:
        writer.close()
