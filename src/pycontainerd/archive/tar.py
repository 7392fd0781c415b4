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

import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

from pycontainerd.archive.rootpath import clean_name, parent_and_base, resolve
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_HEADER = 1 << 20
COPY_CHUNK = 1 << 20
OPAQUE_XATTR = "trusted.overlay.opaque"


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


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


class _Applier:
    def __init__(self, root: str, options: ApplyOptions) -> None:
        self.root = os.path.abspath(root)
        self.opts = options
        self.chown = options.chown if options.chown is not None else os.geteuid() == 0
        self.stats = ApplyStats()
        self.created: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []

    def _owner(self, member: tarfile.TarInfo) -> tuple[int, int]:
        if self.opts.id_map is not None:
            return self.opts.id_map(member.uid, member.gid)
        return member.uid, member.gid

    def _finish(self, path: str, member: tarfile.TarInfo) -> None:
        if self.chown:
            uid, gid = self._owner(member)
            os.lchown(path, uid, gid)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            if name.startswith("trusted."):
                continue
            try:
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                log.debug("cannot set xattr %s on %s: %s", name, path, exc)
        mtime_ns = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((path, mtime_ns))
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
                        _remove_any(full)
            return
        target = os.path.join(parent, base[len(WHITEOUT_PREFIX) :])
        if self.opts.whiteouts == "overlay":
            _remove_any(target)
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        else:
            _remove_any(target)

    def apply(self, tf: tarfile.TarFile) -> ApplyStats:
        for member in tf:
            self.stats.entries += 1
            self._member(tf, member)
        # Directory times last: creating entries inside a directory updates its mtime.
        for path, mtime_ns in reversed(self.dir_times):
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.stats

    def _member(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        clean = clean_name(member.name)
        if not clean:
            return  # the root itself keeps the snapshot's permissions
        parent, base = parent_and_base(self.root, clean)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base, clean)
            return
        path = os.path.join(parent, base)
        if member.isdir():
            if os.path.lexists(path) and not (os.path.isdir(path) and not os.path.islink(path)):
                _remove_any(path)
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            _remove_any(path)
            if member.isreg():
                self._write_file(tf, member, path)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target = resolve(self.root, clean_name(member.linkname), follow_last=False)
                if not os.path.lexists(target):
                    raise InvalidArgument(f"hard link {clean} -> {member.linkname}: target does not exist in the layer")
                os.link(target, path, follow_symlinks=False)
                self.created.add(path)
                return  # a hard link shares the target's metadata
            elif member.isfifo():
                os.mkfifo(path, member.mode & 0o7777)
            elif member.ischr() or member.isblk():
                if not self.opts.allow_devices:
                    self.stats.skipped.append(clean)
                    return
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(path, (member.mode & 0o7777) | kind, os.makedev(member.devmajor, member.devminor))
            else:
                self.stats.skipped.append(clean)
                return
        self.created.add(path)
        self._finish(path, member)

    def _write_file(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        src = tf.extractfile(member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                while chunk := src.read(COPY_CHUNK):
                    out.write(chunk)
                    self.stats.bytes += len(chunk)


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
