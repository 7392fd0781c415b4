"""The native snapshotter (containerd's ``plugins/snapshots/native``): full copies, bind mounts.

Layout under ``root``: ``metadata.db`` and ``snapshots/<id>``, the snapshot's whole tree.
Preparing on a parent copies the parent's tree (modes, owners, times, xattrs, symlinks,
hard links, device nodes and fifos); a view of a parent copies nothing and bind-mounts the
parent read-only. Every mount is one ``bind`` mount with ``rbind`` and ``rw`` or ``ro``.
Works on any filesystem, at the cost of disk space and copy time.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Kind, Mount
from pycontainerd.snapshots.base import MetastoreSnapshotter
from pycontainerd.snapshots.storage import (
    Snapshot,
    remove_tree,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

_FICLONE = 0x40049409  # ioctl: share extents (btrfs, xfs reflink); ext4 says EOPNOTSUPP
_COPY_CHUNK = 1 << 30


def _copy_file(src: str, dst: str) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError:
            pass
        try:
            # In-kernel copy: no round trip of the bytes through Python.
            while os.copy_file_range(fin.fileno(), fout.fileno(), _COPY_CHUNK) > 0:
                pass
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, 1 << 20)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    # Order matters: chown clears setuid/setgid bits and security.capability, so the mode
    # and the xattrs are applied after it, and times last (setting xattrs changes ctime only).
    # An owner that already matches is left alone: unprivileged copies of one's own files work.
    cur = os.lstat(dst)
    if (cur.st_uid, cur.st_gid) != (st.st_uid, st.st_gid):
        os.lchown(dst, st.st_uid, st.st_gid)
    is_link = stat.S_ISLNK(st.st_mode)
    if not is_link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as exc:
            # security.* and trusted.* often cannot be copied (moby/buildkit#1189): skip them.
            log.debug("cannot copy xattr %s of %s: %s", name, src, exc)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy the directory tree ``src`` into the existing directory ``dst``, metadata included.

    Hard links inside ``src`` stay hard links in ``dst``; sockets, fifos and device nodes are
    recreated with mknod. Directory metadata is applied children first, so the copied
    times are not disturbed by later writes into the directory.
    """
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = [(src, dst, os.lstat(src))]
    stack = [(src, dst)]
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as entries:
            for entry in entries:
                s, d = entry.path, os.path.join(ddir, entry.name)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(d, 0o700)
                    dirs.append((s, d, st))
                    stack.append((s, d))
                    continue
                if st.st_nlink > 1:
                    first = links.setdefault((st.st_dev, st.st_ino), d)
                    if first != d:
                        os.link(first, d, follow_symlinks=False)  # shares the inode, and with it every attribute
                        continue
                if stat.S_ISREG(mode):
                    _copy_file(s, d)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(s), d)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    os.mknod(d, mode, st.st_rdev)
                else:
                    log.warning("not copying %s: unsupported file type %o", s, stat.S_IFMT(mode))
                    continue
                _copy_metadata(s, d, st)
    for s, d, st in reversed(dirs):
        _copy_metadata(s, d, st)


class NativeSnapshotter(MetastoreSnapshotter):
    """Snapshots as plain directory copies under ``root`` (created 0700 if missing)."""

    def _dir(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}"

    def _layer_dir(self, id_: int) -> str:
        return self._dir(id_)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        # A view of a parent shares the parent's (immutable) copy instead of making its own.
        source = self._dir(s.id) if s.kind == Kind.ACTIVE or not s.parent_ids else self._dir(s.parent_ids[0])
        return [Mount("bind", source, ("rbind", "ro" if s.kind == Kind.VIEW else "rw"))]

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        final: str | None = None
        try:
            with self._ms.write() as tx:
                snapshot = tx.create(kind, key, parent, labels)
                if kind == Kind.ACTIVE or not snapshot.parent_ids:
                    # Copied under a temporary name: a crash mid-copy leaves only a new-* orphan.
                    tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
                    try:
                        os.chmod(tmp, 0o755)
                        if snapshot.parent_ids:
                            copy_tree(self._dir(snapshot.parent_ids[0]), tmp)
                        final = self._dir(snapshot.id)
                        os.rename(tmp, final)
                    except BaseException:
                        remove_tree(tmp)
                        raise
        except BaseException:
            if final is not None:
                remove_tree(final)
            raise
        return self._mounts(snapshot)
