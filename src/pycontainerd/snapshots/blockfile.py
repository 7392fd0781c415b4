"""The blockfile snapshotter (containerd's ``plugins/snapshots/blockfile``): a filesystem image per snapshot.

Layout under ``root``::

    metadata.db              the metastore (see storage.py)
    scratch                  the empty filesystem image every base snapshot starts from
    snapshots/<id>/block     the snapshot's image (ACTIVE, COMMITTED, or a VIEW without parent)
    snapshots/new-*          a snapshot being created (renamed to <id> inside the transaction)
    snapshots/removing-<id>  a removed snapshot being deleted

Prepare copies the parent's image (or the scratch image) to a new file; View of a parent
shares the parent's image, mounted read-only. Copies keep holes: a reflink where the
filesystem under ``root`` can share extents (btrfs, xfs), otherwise only the allocated ranges
are copied (``SEEK_DATA``/``SEEK_HOLE``), so a 10 GiB image holding 300 MB costs ~300 MB.
Every mount is ``<fs_type>`` of the image with ``loop`` and ``rw``/``ro``, as in containerd:
:mod:`pycontainerd.snapshots.mount` attaches the loop device.

The scratch image is either copied from a configured ``scratch_file`` (containerd's only way)
or, here, made on first use with ``mkfs.ext4`` (sparse, lazy inode tables and journal) and
its ``lost+found`` removed with ``debugfs`` so that a new snapshot is truly empty.
Usage is the image's allocated bytes minus its parent's, with one inode (as containerd counts).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Kind, Mount, Usage
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, Unavailable
from pycontainerd.snapshots.base import MetastoreSnapshotter
from pycontainerd.snapshots.storage import Snapshot, remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pycontainerd.snapshots.storage import Record, Tx

DEFAULT_SCRATCH_SIZE = "10GiB"
_FICLONE = 0x40049409
_CHUNK = 1 << 30
_TOOL_TIMEOUT = 120.0
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in ``"10GiB"``, ``"512M"``, ``"64mb"`` or ``"1048576"`` (binary units throughout)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if match is None or int(match[1]) == 0:
        raise InvalidArgument(f"bad size {text!r}: want e.g. 10GiB, 512MiB or a byte count")
    return int(match[1]) * _UNITS[match[2]]


def copy_sparse(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy the file ``src`` to the new file ``dst``, keeping holes, and fsync it.

    A reflink (``FICLONE``) when both are on a filesystem that shares extents; otherwise each
    allocated range is copied in the kernel with ``copy_file_range``.
    """
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        ifd, ofd = fin.fileno(), fout.fileno()
        try:
            fcntl.ioctl(ofd, _FICLONE, ifd)
        except OSError:
            size = os.fstat(ifd).st_size
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(ifd, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # nothing but a hole from here on
                        break
                    raise
                end = os.lseek(ifd, start, os.SEEK_HOLE)
                _copy_range(ifd, ofd, start, end)
                offset = end
            os.ftruncate(ofd, size)
        os.fsync(ofd)


def _copy_range(ifd: int, ofd: int, start: int, end: int) -> None:
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(ifd, ofd, min(end - pos, _CHUNK), pos, pos)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = os.pwrite(ofd, os.pread(ifd, min(end - pos, 1 << 20), pos), pos)
        if n == 0:
            raise OSError(errno.EIO, f"short copy at offset {pos}: source shrank")
        pos += n


def _run(argv: Sequence[str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise Unavailable(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{' '.join(argv)} took longer than {_TOOL_TIMEOUT:.0f} s") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise Unavailable(f"{' '.join(argv)} failed (exit {result.returncode}): {detail}")


def make_ext4_scratch(path: str | os.PathLike[str], size: int) -> None:
    """Create ``path``: an empty, sparse ext4 image of ``size`` bytes without ``lost+found``.

    Inode tables and the journal are left unwritten (mke2fs knows that holes in a regular
    file read as zeroes), so the image starts at a few MiB whatever its size.
    """
    with open(path, "xb") as f:
        f.truncate(size)
    _run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", os.fspath(path)])
    _run(["debugfs", "-w", "-R", "rmdir lost+found", os.fspath(path)])


def missing_tools(fs_type: str, scratch_file: str) -> str | None:
    """Why a scratch image could not be had here, or None when it can."""
    if scratch_file:
        return None
    if fs_type != "ext4":
        return f"no scratch_file configured, and only ext4 scratch images can be made here (fs_type {fs_type})"
    for tool in ("mkfs.ext4", "debugfs"):
        if shutil.which(tool) is None:
            return f"no scratch_file configured and {tool} (e2fsprogs) is not installed"
    return None


def _allocated(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


class BlockfileSnapshotter(MetastoreSnapshotter):
    """Snapshots as loop-mounted filesystem images under ``root``.

    Args:
        root: the snapshotter's directory (created 0700 if missing).
        scratch_file: an empty filesystem image to copy as ``<root>/scratch``; empty means one
            is made with mkfs.ext4 on first use (``fs_type`` must then be ext4).
        fs_type: the filesystem in the images, the mount type.
        mount_options: options of every mount (``loop`` is added when missing), before
            ``rw``/``ro``.
        recreate_scratch: replace an existing ``<root>/scratch`` now.
        scratch_size: size of a made scratch image (sparse), e.g. ``"10GiB"``.

    Raises:
        FailedPrecondition: no scratch image can be had (see :func:`missing_tools`).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        scratch_file: str = "",
        fs_type: str = "ext4",
        mount_options: Sequence[str] = (),
        recreate_scratch: bool = False,
        scratch_size: str = DEFAULT_SCRATCH_SIZE,
    ) -> None:
        reason = missing_tools(fs_type, scratch_file)
        if reason is not None:
            raise FailedPrecondition(reason)
        self.fs_type = fs_type
        self.scratch_size = parse_size(scratch_size)
        options = list(mount_options) or ["loop"]
        if "loop" not in options:
            options.append("loop")
        self.options: tuple[str, ...] = tuple(options)
        self._scratch_lock = threading.Lock()
        super().__init__(root)
        self.scratch = self.root / "scratch"
        for leftover in self.root.glob("scratch.tmp-*"):
            leftover.unlink()
        if recreate_scratch:
            self.scratch.unlink(missing_ok=True)
        if scratch_file and not self.scratch.exists():
            self._install_scratch(lambda tmp: copy_sparse(scratch_file, tmp))

    # -- the scratch image --------------------------------------------------------------

    def _install_scratch(self, make: Callable[[str], None]) -> None:
        # Made under a temporary name, renamed when complete: a crash never leaves a half scratch.
        tmp = f"{self.root}/scratch.tmp-{secrets.token_hex(8)}"
        try:
            make(tmp)
            os.rename(tmp, self.scratch)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _ensure_scratch(self) -> str:
        with self._scratch_lock:
            if not self.scratch.exists():
                self._install_scratch(lambda tmp: make_ext4_scratch(tmp, self.scratch_size))
        return str(self.scratch)

    # -- paths and mounts ---------------------------------------------------------------

    def _block(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}/block"

    def _layer_dir(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}"

    def _source(self, s: Snapshot) -> str:
        return self._block(s.id) if s.kind == Kind.ACTIVE or not s.parent_ids else self._block(s.parent_ids[0])

    def _mounts(self, s: Snapshot) -> list[Mount]:
        mode = "ro" if s.kind == Kind.VIEW else "rw"
        return [Mount(self.fs_type, self._source(s), (*self.options, mode))]

    def _own_usage(self, tx: Tx, record: Record) -> Usage:
        if record.info.kind != Kind.ACTIVE:
            return record.usage
        parents = tx.snapshot(record.info.name).parent_ids
        parent = _allocated(self._block(parents[0])) if parents else 0
        return Usage(size=max(0, _allocated(self._block(record.id)) - parent), inodes=1)

    # -- reading ------------------------------------------------------------------------

    def usage(self, key: str) -> Usage:
        """Allocated bytes of the image beyond its parent's; recorded at commit, measured before."""
        with self._ms.read() as tx:
            return self._own_usage(tx, tx.get(key))

    # -- changing -----------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        scratch = self._ensure_scratch()  # outside the transaction: mkfs takes a while
        final: str | None = None
        try:
            with self._ms.write() as tx:
                snapshot = tx.create(kind, key, parent, labels)
                if kind == Kind.ACTIVE or not snapshot.parent_ids:
                    # Copied under a temporary name: a crash mid-copy leaves only a new-* orphan.
                    tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
                    try:
                        src = self._block(snapshot.parent_ids[0]) if snapshot.parent_ids else scratch
                        copy_sparse(src, f"{tmp}/block")
                        final = self._layer_dir(snapshot.id)
                        os.rename(tmp, final)
                    except BaseException:
                        remove_tree(tmp)
                        raise
        except BaseException:
            if final is not None:
                remove_tree(final)
            raise
        return self._mounts(snapshot)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Commit the active ``key`` as ``name``; its image is flushed to disk first."""
        with self._ms.write() as tx:
            record = tx.get(key)
            usage = self._own_usage(tx, record)
            if record.info.kind == Kind.ACTIVE:
                # Writes through the loop device sit in the image's page cache until flushed.
                fd = os.open(self._block(record.id), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            tx.commit(key, name, usage, labels)
