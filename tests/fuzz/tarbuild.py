"""Building tar archives member by member, including ones no well-behaved tool would write, and
recording a directory tree's state to prove that applying them changed nothing outside the root."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field

OUT = "@OUT@"
"""Placeholder in names and link targets for the absolute path of the directory outside the root."""


@dataclass(frozen=True)
class Member:
    """One tar member as the fuzzer describes it (link targets may hold :data:`OUT`)."""

    name: str
    kind: bytes
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    pax: dict[str, str] = field(default_factory=dict)
    major: int = 0
    minor: int = 0


def tar_bytes(members: list[Member], outside: str, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """The archive of ``members`` with :data:`OUT` replaced by ``outside``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name.replace(OUT, outside))
            info.type = m.kind
            info.mode, info.uid, info.gid, info.mtime = m.mode, m.uid, m.gid, m.mtime
            info.linkname = m.link.replace(OUT, outside)
            info.devmajor, info.devminor = m.major, m.minor
            info.pax_headers = dict(m.pax)
            if m.kind in (tarfile.REGTYPE, tarfile.CONTTYPE):
                info.size = len(m.data)
                tf.addfile(info, io.BytesIO(m.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


Entry = tuple[int, int, int, int, int, str]
"""(mode, uid, gid, size, mtime_ns, content digest or link target) of one path."""


def tree_state(top: str) -> dict[str, Entry]:
    """Every path under ``top`` (itself included) with its metadata, never following symlinks."""
    state: dict[str, Entry] = {}

    def record(path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            what = "->" + os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as fh:
                what = hashlib.sha256(fh.read()).hexdigest()
        else:
            what = ""
        xattrs = ",".join(sorted(os.listxattr(path, follow_symlinks=False)))
        state[os.path.relpath(path, top)] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            what + "|" + xattrs,
        )

    record(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            record(os.path.join(dirpath, name))
    return state


def inodes(top: str) -> set[tuple[int, int]]:
    """(device, inode) of every non-directory under ``top``."""
    found = set()
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            found.add((st.st_dev, st.st_ino))
    return found


def make_outside(path: str) -> None:
    """The victim tree beside the root: files and a directory with telling modes."""
    os.makedirs(os.path.join(path, "dir"))
    for name, mode in (("victim", 0o400), ("dir/secret", 0o600), ("exec", 0o755)):
        full = os.path.join(path, name)
        with open(full, "wb") as fh:
            fh.write(b"outside " + name.encode())
        os.chmod(full, mode)
    os.chmod(os.path.join(path, "dir"), 0o700)
    os.symlink("victim", os.path.join(path, "rel-link"))
