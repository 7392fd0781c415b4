"""The btrfs snapshotter (containerd's ``plugins/snapshots/btrfs``): one subvolume per snapshot.

The root must be on a mounted btrfs. Layout under ``root``::

    metadata.db              the metastore (see storage.py)
    snapshots/<id>           the snapshot's subvolume, whatever its kind
    snapshots/new-<hex>      a subvolume being created (renamed to <id> inside the transaction)
    snapshots/removing-<id>  a removed snapshot's subvolume being deleted

Prepare on a parent is a writable btrfs snapshot of the parent's subvolume (copy-on-write: no
data is copied, whatever the layer's size); View is a read-only snapshot; without a parent
either is a new empty subvolume. Commit sets the subvolume's read-only flag in place (where
containerd snapshots it once more and deletes the original: same result, one step). Every
mount is ``btrfs`` of the filesystem's device with ``subvolid=<id>``, plus ``ro`` for views,
as containerd returns them; the kernel reuses the already-mounted filesystem.

Usage of a snapshot with a parent counts only what differs from the parent: a btrfs snapshot
keeps inode numbers and change times, so an inode whose ``(st_ino, st_ctime)`` matches the
parent's at the same path is shared and not counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Kind, Mount, Usage
from pycontainerd.errdefs import FailedPrecondition
from pycontainerd.snapshots import btrfsctl
from pycontainerd.snapshots.base import MetastoreSnapshotter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pycontainerd.snapshots.storage import Snapshot

log = logging.getLogger(__name__)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def lookup_mount(path: str | os.PathLike[str]) -> tuple[str, str, str]:
    """``(mount point, filesystem type, source)`` of the mount holding ``path`` (which must exist).

    The deepest mount point containing the resolved path wins; of several stacked on that
    point, the last mounted (the visible one).
    """
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = _unescape(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best[0])):
                best = (point, fields[sep + 1], _unescape(fields[sep + 2]))
    if best is None:
        raise FileNotFoundError(f"no mount holds {real}")
    return best


def unsupported_reason(root: str | os.PathLike[str]) -> str | None:
    """Why ``root`` cannot hold a btrfs snapshotter (not on btrfs), or None when it can.

    ``root`` need not exist yet: its nearest existing ancestor is looked at.
    """
    probe = Path(root).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    point, fstype, _ = lookup_mount(probe)
    if fstype != "btrfs":
        return f"path {root} ({fstype} mounted on {point}) must be on a btrfs filesystem for the btrfs snapshotter"
    return None


def _attrs(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns


def diff_usage(layer: str, parent: str | None) -> Usage:
    """Allocated bytes and inodes of ``layer`` that it does not share with ``parent``.

    Without a parent every inode counts (like :func:`storage.disk_usage`); a hard-linked
    inode counts once; the layer's root directory counts when its mode, owner or mtime changed.
    """
    seen: set[int] = set()
    size = 0

    def shared(rel: str, st: os.stat_result) -> bool:
        if parent is None:
            return False
        try:
            pst = os.lstat(os.path.join(parent, rel) if rel else parent)
        except OSError:
            return False
        if not rel:
            # The root's change time moves when a new subvolume is renamed into place.
            return _attrs(pst) == _attrs(st)
        return (pst.st_ino, pst.st_ctime_ns) == (st.st_ino, st.st_ctime_ns)

    def count(rel: str, st: os.stat_result) -> None:
        nonlocal size
        if st.st_ino not in seen and not shared(rel, st):
            seen.add(st.st_ino)
            size += st.st_blocks * 512

    count("", os.lstat(layer))
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(layer, rel_dir) if rel_dir else layer) as entries:
            for entry in entries:
                rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode) and st.st_ino == btrfsctl.FIRST_FREE_OBJECTID:
                    continue  # a nested subvolume: not part of this snapshot
                count(rel, st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
    return Usage(size=size, inodes=len(seen))


class BtrfsSnapshotter(MetastoreSnapshotter):
    """Snapshots as btrfs subvolumes under ``root`` (created 0700 if missing).

    Raises:
        FailedPrecondition: ``root`` is not on btrfs.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root).absolute()
        reason = unsupported_reason(root)
        if reason is not None:
            raise FailedPrecondition(reason)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _, _, self.device = lookup_mount(root)
        super().__init__(root)

    # -- paths and mounts ---------------------------------------------------------------

    def _dir(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}"

    def _layer_dir(self, id_: int) -> str:
        return self._dir(id_)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        options = [f"subvolid={btrfsctl.subvolume_id(self._dir(s.id))}"]
        if s.kind != Kind.ACTIVE:
            options.append("ro")
        return [Mount("btrfs", self.device, tuple(options))]

    def _usage(self, s: Snapshot) -> Usage:
        return diff_usage(self._dir(s.id), self._dir(s.parent_ids[0]) if s.parent_ids else None)

    # -- reading ------------------------------------------------------------------------

    def usage(self, key: str) -> Usage:
        """Usage of the snapshot's own changes: recorded for a committed one, measured otherwise."""
        with self._ms.read() as tx:
            record = tx.get(key)
            snapshot = tx.snapshot(key) if record.info.kind == Kind.ACTIVE else None
        return record.usage if snapshot is None else self._usage(snapshot)

    # -- changing -----------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        # Built under a temporary name so a crash never leaves a half-made <id> subvolume.
        tmp = f"{self._snapshots}/new-{secrets.token_hex(8)}"
        made = ""
        try:
            with self._ms.write() as tx:
                snapshot = tx.create(kind, key, parent, labels)
                if snapshot.parent_ids:
                    btrfsctl.snapshot_subvolume(self._dir(snapshot.parent_ids[0]), tmp, read_only=kind == Kind.VIEW)
                    made = tmp
                else:
                    btrfsctl.create_subvolume(tmp)
                    made = tmp
                    os.chmod(tmp, 0o755)
                    if kind == Kind.VIEW:
                        btrfsctl.set_read_only(tmp, True)
                os.rename(tmp, self._dir(snapshot.id))
                made = self._dir(snapshot.id)
        except BaseException:
            if made:
                self._delete(made)
            raise
        return self._mounts(snapshot)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Commit the active ``key`` as ``name``: its subvolume becomes read-only in place."""
        frozen = ""
        try:
            with self._ms.write() as tx:
                record = tx.get(key)
                usage = self._usage(tx.snapshot(key)) if record.info.kind == Kind.ACTIVE else Usage()
                id_ = tx.commit(key, name, usage, labels)
                btrfsctl.set_read_only(self._dir(id_), True)
                frozen = self._dir(id_)
        except BaseException:
            if frozen:  # flagged, but the transaction did not commit: still active
                btrfsctl.set_read_only(frozen, False)
            raise

    def remove(self, key: str) -> None:
        """Remove ``key`` and delete its subvolume; FailedPrecondition while it has children."""
        renamed = ""
        path = ""
        try:
            with self._ms.write() as tx:
                id_, _ = tx.remove(key)
                path = self._dir(id_)
                # Renaming a subvolume is allowed (read-only or not) and atomic: once the record
                # is gone nothing reaches it, and a crash mid-delete leaves a removing-* orphan.
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, f"{self._snapshots}/removing-{id_}")
                    renamed = f"{self._snapshots}/removing-{id_}"
        except BaseException:
            if renamed:
                os.rename(renamed, path)
            raise
        if renamed:
            self._delete(renamed)

    def cleanup(self) -> list[str]:
        """Delete subvolumes and directories no record owns (crash leftovers); returns their names."""
        removed = []
        with self._ms.write() as tx:
            owned = {str(i) for i in tx.ids()}
            for entry in os.scandir(self._snapshots):
                if entry.name not in owned:
                    log.info("removing orphan btrfs snapshot %s", entry.path)
                    self._delete(entry.path)
                    removed.append(entry.name)
        return removed

    @staticmethod
    def _delete(path: str) -> None:
        try:
            btrfsctl.delete_any(path)
        except OSError as exc:
            # EBUSY: still mounted somewhere. Left for cleanup() at the next start.
            log.warning("failed to delete btrfs snapshot %s: %s", path, exc)
