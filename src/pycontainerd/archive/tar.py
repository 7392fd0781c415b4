"""Apply a layer tar stream into a directory, in one pass, confined to that directory.

Rules (containerd's, plus a few of our own where the archive could hurt the host):

* Member names are cleaned (``/`` and ``..`` cannot climb out); parents are resolved with
  :func:`rootpath.resolve`, so a symlink planted by an earlier member (``evil -> /etc``) is
  followed *inside* the root, never to the host.
* Hard links must point at something already inside the root.
* Device nodes are skipped unless ``allow_devices`` (runc gives containers their own /dev);
  FIFOs are fine. ``trusted.*`` xattrs from the archive are dropped: they would let a layer
  forge overlayfs metadata.
* PAX and GNU long-name headers larger than :data:`MAX_HEADER` are refused instead of being
  read into memory.
* OCI whiteouts: ``.wh.<name>`` deletes ``<name>`` from the layers below and
  ``.wh..wh..opq`` hides everything below in that directory. With ``whiteouts="overlay"`` they
  become overlayfs whiteouts (a 0:0 character device, the ``trusted.overlay.opaque`` xattr) in
  an upper directory; with ``whiteouts="remove"`` the lower content is deleted in place (a
  full-copy snapshotter such as native).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

from pycontainerd.archive.rootpath import clean_name, resolve
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_HEADER = 1 << 20
COPY_CHUNK = 1 << 20
OPAQUE_XATTR = "trusted.overlay.opaque"
# Errors an archive's own content provokes (a name too long for the filesystem, a path through a
# file, a loop of symlinks...): the layer is invalid, the host is fine. Anything else (ENOSPC,
# EIO, EROFS...) is a real failure and propagates as it is.
_ARCHIVE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP, errno.EMLINK})


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses oversized PAX/GNU extension headers before reading them."""

    def _proc_pax(self, tarfile: tarfile.TarFile) -> Any:
        if self.size > MAX_HEADER:
            raise InvalidArgument(f"tar pax header of {self.size} bytes exceeds {MAX_HEADER}")
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> Any:
        if self.size > MAX_HEADER:
            raise InvalidArgument(f"tar long-name header of {self.size} bytes exceeds {MAX_HEADER}")
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]


@dataclass(slots=True)
class ApplyOptions:
    """How to apply a layer.

    Attributes:
        whiteouts: ``overlay`` (write overlayfs whiteouts) or ``remove`` (delete lower files).
        allow_devices: create block/character device nodes from the archive.
        chown: apply owners from the archive (needs root); ``None`` means "if root".
        id_map: maps archive (uid, gid) to host (uid, gid), for user namespaces.
    """

    whiteouts: Literal["overlay", "remove"] = "remove"
    allow_devices: bool = False
    chown: bool | None = None
    id_map: Callable[[int, int], tuple[int, int]] | None = None


@dataclass(slots=True)
class ApplyStats:
    """What an apply did."""

    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _remove_any(path: str) -> bool:
    """Remove whatever is at ``path``; True when it was a directory or a symlink (which can
    change how later names resolve)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
        return True
    os.unlink(path)
    return stat.S_ISLNK(st.st_mode)


class _Applier:
    def __init__(self, root: str, options: ApplyOptions) -> None:
        self.root = os.path.abspath(root)
        self.opts = options
        self.chown = options.chown if options.chown is not None else os.geteuid() == 0
        self.stats = ApplyStats()
        self.created: set[str] = set()
        # (path, inode, mtime) of directories, set last; the inode tells whether a later member
        # removed or replaced the directory, whose time must then not land on its replacement.
        self.dir_times: list[tuple[str, int, int]] = []
        # Clean relative name of a directory -> its resolved host path, for directories seen
        # to be real directories during this apply. Any removal of a directory or symlink
        # clears it, so a later member can never resolve through a stale entry.
        self.dirs: dict[str, str] = {"": self.root}

    def _owner(self, member: tarfile.TarInfo) -> tuple[int, int]:
        if self.opts.id_map is not None:
            return self.opts.id_map(member.uid, member.gid)
        return member.uid, member.gid

    def _remove(self, path: str) -> None:
        if _remove_any(path):
            self.dirs = {"": self.root}

    def _parent(self, clean: str) -> tuple[str, str]:
        """(resolved parent dir, base name) of a member, missing parents created."""
        parent_rel, _, base = clean.rpartition("/")
        parent = self.dirs.get(parent_rel)
        if parent is None:
            parent = resolve(self.root, parent_rel)
            os.makedirs(parent, mode=0o755, exist_ok=True)
            self.dirs[parent_rel] = parent
        return parent, base

    def _xattrs(self, target: str | int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            if name.startswith("trusted."):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value.encode("utf-8", "surrogateescape"))
                else:
                    os.setxattr(target, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                log.debug("cannot set xattr %s on %s: %s", name, target, exc)

    def _finish(self, path: str, member: tarfile.TarInfo) -> None:
        if self.chown:
            uid, gid = self._owner(member)
            os.lchown(path, uid, gid)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        self._xattrs(path, member)
        mtime_ns = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((path, os.lstat(path).st_ino, mtime_ns))
        else:
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def _whiteout(self, parent: str, base: str, name: str) -> None:
        if base == OPAQUE_WHITEOUT:
            if self.opts.whiteouts == "overlay":
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            else:
                for entry in os.listdir(parent):
                    full = os.path.join(parent, entry)
                    if full not in self.created:
                        self._remove(full)
            return
        hidden = base[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            # ".wh..." would delete the parent of the directory, ".wh.." the directory itself.
            raise InvalidArgument(f"invalid whiteout name {name!r}")
        target = os.path.join(parent, hidden)
        self._remove(target)
        if self.opts.whiteouts == "overlay":
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))

    def apply(self, tf: tarfile.TarFile) -> ApplyStats:
        for member in tf:
            self.stats.entries += 1
            if "\0" in member.name or "\0" in member.linkname:
                raise InvalidArgument(f"layer entry {member.name!r}: NUL byte in a name")
            try:
                self._member(tf, member)
            except OSError as exc:
                if exc.errno in _ARCHIVE_ERRNOS:
                    raise InvalidArgument(f"cannot apply layer entry {member.name!r}: {exc.strerror}") from exc
                raise
        # Directory times last: creating entries inside a directory updates its mtime.
        for path, inode, mtime_ns in reversed(self.dir_times):
            try:
                if os.lstat(path).st_ino != inode:
                    continue  # replaced by a later member
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed by a later member
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.stats

    def _member(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        clean = clean_name(member.name)
        if not clean:
            return  # the root itself keeps the snapshot's permissions
        parent, base = self._parent(clean)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base, clean)
            return
        path = os.path.join(parent, base)
        if member.isreg():
            self._write_file(tf, member, path)
            return
        if member.isdir():
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    self._remove(path)
                    os.mkdir(path, 0o755)
            self.dirs[clean] = path
        elif member.issym():
            if not member.linkname:
                raise InvalidArgument(f"symlink {clean}: empty target")
            self._create(path, lambda: os.symlink(member.linkname, path))
        elif member.islnk():
            target = resolve(self.root, clean_name(member.linkname), follow_last=False)
            if not os.path.lexists(target):
                raise InvalidArgument(f"hard link {clean} -> {member.linkname}: target does not exist in the layer")
            if stat.S_ISDIR(os.lstat(target).st_mode):
                raise InvalidArgument(f"hard link {clean} -> {member.linkname}: target is a directory")
            if target == path:
                return  # a link to itself: nothing to do
            self._create(path, lambda: os.link(target, path, follow_symlinks=False))
            self.created.add(path)
            return  # a hard link shares the target's metadata
        elif member.isfifo():
            self._create(path, lambda: os.mkfifo(path, member.mode & 0o7777))
        elif member.ischr() or member.isblk():
            if not self.opts.allow_devices:
                self.stats.skipped.append(clean)
                return
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
            self._create(path, lambda: os.mknod(path, (member.mode & 0o7777) | kind, dev))
        else:
            self.stats.skipped.append(clean)
            return
        self.created.add(path)
        self._finish(path, member)

    def _create(self, path: str, make: Callable[[], None]) -> None:
        """Create a non-directory entry, replacing whatever was at ``path``."""
        try:
            make()
        except FileExistsError:
            self._remove(path)
            make()

    def _write_file(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            self._remove(path)
            fd = os.open(path, flags, 0o600)
        try:
            size = member.size
            if size:
                src = tf.extractfile(member)
                assert src is not None
                if size <= COPY_CHUNK:
                    data = src.read(size)
                    _write_all(fd, data)
                    self.stats.bytes += len(data)
                else:
                    while chunk := src.read(COPY_CHUNK):
                        _write_all(fd, chunk)
                        self.stats.bytes += len(chunk)
            # Metadata through the descriptor: no more path lookups; times last, after the data.
            if self.chown:
                uid, gid = self._owner(member)
                os.fchown(fd, uid, gid)
            os.fchmod(fd, member.mode & 0o7777)
            if member.pax_headers:
                self._xattrs(fd, member)
            mtime_ns = int(member.mtime * 1_000_000_000)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        self.created.add(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def apply_tar(stream: IO[bytes], root: str | os.PathLike[str], options: ApplyOptions | None = None) -> ApplyStats:
    """Apply the uncompressed tar ``stream`` into ``root`` (which must exist).

    Raises InvalidArgument for archives that try to escape, oversized headers or broken
    hard links; the stream is read once, sequentially.
    """
    applier = _Applier(os.fspath(root), options or ApplyOptions())
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tf:
            return applier.apply(tf)
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid tar stream: {exc}") from exc
