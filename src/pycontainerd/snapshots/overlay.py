"""The overlayfs snapshotter (containerd's ``plugins/snapshots/overlay``).

Layout under ``root``::

    metadata.db            the metastore (see storage.py)
    snapshots/<id>/fs      the snapshot's own layer (overlay upperdir while ACTIVE)
    snapshots/<id>/work    overlay workdir (ACTIVE snapshots only)
    snapshots/new-*        a snapshot being created (renamed to <id> inside the transaction)
    snapshots/removing-<id> a removed snapshot being deleted

Mounts, as containerd builds them: no parent -> a bind mount of ``fs`` (``rw`` or ``ro``);
ACTIVE with parents -> ``overlay`` with ``workdir``, ``upperdir`` and ``lowerdir`` (the
parents' ``fs``, closest first); VIEW of one parent -> a read-only bind of that parent's
``fs``; VIEW of several -> ``overlay`` with ``lowerdir`` only. Paths are always absolute;
:mod:`pycontainerd.snapshots.mount` compacts a lowerdir that would overflow a page.

User namespaces (containerd's ``remap-ids``): a snapshot labelled with
``containerd.io/snapshot/uidmapping``/``gidmapping`` gets its own ``fs`` owned by the mapped
root, so the container's root can write its upper layer, and, when ID-mapped mounts work here
(``remap_ids``), its overlay (or read-only bind of a parent) carries ``uidmap=``/``gidmap=``
options: the mount code then shows the shared parent layers through ID-mapped mounts, owned by
the mapped IDs, without changing them on disk. A parentless writable snapshot is a bind of
its own ``fs`` and gets no mapping: it is stored with host IDs already.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Info, Kind, Mount
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.snapshots import mount as mounting
from pycontainerd.snapshots.base import MetastoreSnapshotter
from pycontainerd.snapshots.idmap import CAPABILITY_ONLY_REMAP_IDS, CAPABILITY_REMAP_IDS, IDMap
from pycontainerd.snapshots.storage import (
    Snapshot,
    remove_tree,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

log = logging.getLogger(__name__)

UPPERDIR_LABEL = "containerd.io/snapshot/overlay.upperdir"
"""Label added to every Info when ``upperdir_label`` is on: the snapshot's ``fs`` path."""


def _has_option(options: Sequence[str], key: str) -> bool:
    return any(o == key or o.startswith(key + "=") for o in options)


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields != ["0", "0", "4294967295"]


def default_mount_options(root: str | Path, configured: Sequence[str] = ()) -> list[str]:
    """Configured options plus those containerd adds: ``userxattr`` in a user namespace
    (kernel >= 5.11 needs it there, never as real root) and ``index=off`` when supported.
    """
    options = list(configured)
    if not _has_option(options, "userxattr") and _in_user_namespace():
        release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
        if release >= (5, 11):
            options.append("userxattr")
    # Options are last-wins in the kernel, so never append index=off after a configured index=on.
    if not _has_option(options, "index") and os.path.exists("/sys/module/overlay/parameters/index"):
        options.append("index=off")
    return options


def unsupported_reason(root: str | Path) -> str | None:
    """Why overlayfs cannot be used under ``root``, or None when a test mount works there."""
    listed = False
    with contextlib.suppress(OSError), open("/proc/filesystems") as f:
        listed = any(line.split()[-1:] == ["overlay"] for line in f)
    os.makedirs(root, mode=0o700, exist_ok=True)
    check = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
    try:
        for name in ("lower1", "lower2", "upper", "work", "merged"):
            os.mkdir(os.path.join(check, name))
        lower = f"{check}/lower2:{check}/lower1"
        # userxattr is the one default that decides whether a rootless mount works at all.
        extra = [o for o in default_mount_options(root) if o == "userxattr"]
        options = (f"lowerdir={lower}", f"upperdir={check}/upper", f"workdir={check}/work", *extra)
        merged = os.path.join(check, "merged")
        try:
            mounting.mount(Mount("overlay", "overlay", options), merged)
        except OSError as exc:
            hint = "" if listed else " (overlay is not in /proc/filesystems)"
            return f"overlayfs test mount in {root} failed: {exc.strerror}{hint}"
        mounting.unmount_all(merged)
        return None
    finally:
        remove_tree(check)


class OverlaySnapshotter(MetastoreSnapshotter):
    """Snapshots as overlayfs layers under ``root``.

    Args:
        root: the snapshotter's directory (created 0700 if missing); must not contain ``:``
            or ``,``, which would break the overlay option string.
        upperdir_label: report each snapshot's ``fs`` path as the label :data:`UPPERDIR_LABEL`.
        mount_options: extra options for overlay mounts (never for bind mounts).
        remap_ids: honour the ID mapping labels with ``uidmap=``/``gidmap=`` mount options
            (ID-mapped lower layers); only where :func:`pycontainerd.snapshots.idmap.unsupported_reason`
            says ID-mapped mounts work.
        slow_chown: let clients fall back to chown-remapped copies of the layers when
            ``remap_ids`` is off (otherwise :attr:`capabilities` says ``only-remap-ids``).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        upperdir_label: bool = False,
        mount_options: Sequence[str] = (),
        remap_ids: bool = False,
        slow_chown: bool = False,
    ) -> None:
        root = Path(root).absolute()
        if ":" in str(root) or "," in str(root):
            raise InvalidArgument(f"overlay snapshotter root {root} must not contain ':' or ','")
        super().__init__(root)
        self._upperdir_label = upperdir_label
        self.remap_ids = remap_ids
        # containerd's: remap-ids when the layers can be ID-mapped here (clients then send the
        # mapping labels and nothing else), only-remap-ids unless chown copies are allowed.
        self.capabilities: tuple[str, ...] = (
            *((CAPABILITY_REMAP_IDS,) if remap_ids else ()),
            *(() if slow_chown else (CAPABILITY_ONLY_REMAP_IDS,)),
        )
        self.options: tuple[str, ...] = tuple(default_mount_options(self.root, mount_options))

    # -- paths and mounts ---------------------------------------------------------------

    def _upper(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}/fs"

    def _layer_dir(self, id_: int) -> str:
        return self._upper(id_)

    def _work(self, id_: int) -> str:
        return f"{self._snapshots}/{id_}/work"

    def _labelled(self, id_: int, info: Info) -> Info:
        if not self._upperdir_label:
            return info
        labels = {**info.labels, UPPERDIR_LABEL: self._upper(id_)}
        return Info(info.name, info.kind, info.parent, labels, info.created_at, info.updated_at)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        if not s.parent_ids:
            # overlayfs needs at least one lowerdir: a single layer is a plain bind mount.
            return [Mount("bind", self._upper(s.id), ("ro" if s.kind == Kind.VIEW else "rw", "rbind"))]
        mapping = IDMap.from_labels(s.labels) if self.remap_ids else None
        idmapped = mapping.mount_options() if mapping is not None else ()
        options: list[str] = []
        if s.kind == Kind.ACTIVE:
            options += [f"workdir={self._work(s.id)}", f"upperdir={self._upper(s.id)}"]
        elif len(s.parent_ids) == 1:
            return [Mount("bind", self._upper(s.parent_ids[0]), ("ro", "rbind", *idmapped))]
        options.append("lowerdir=" + ":".join(self._upper(p) for p in s.parent_ids))
        options += self.options
        return [Mount("overlay", "overlay", (*options, *idmapped))]

    # -- reading ------------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        """The snapshot ``key``; NotFound if it does not exist."""
        with self._ms.read() as tx:
            record = tx.get(key)
        return self._labelled(record.id, record.info)

    def walk(self) -> Iterator[Info]:
        """Every snapshot (read in one transaction, then yielded)."""
        with self._ms.read() as tx:
            ids = {v: k for k, v in tx.ids().items()}
            infos = tx.walk()
        return iter([self._labelled(ids[i.name], i) for i in infos])

    # -- changing -----------------------------------------------------------------------

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change labels only (``labels``, ``labels.<k>``); other paths are InvalidArgument."""
        # The upperdir label is computed, never stored.
        clean = {k: v for k, v in info.labels.items() if k != UPPERDIR_LABEL}
        wanted = Info(info.name, info.kind, info.parent, clean, info.created_at, info.updated_at)
        with self._ms.write() as tx:
            updated = tx.update(wanted, fieldpaths)
            id_ = tx.get(info.name).id
        return self._labelled(id_, updated)

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        final: str | None = None
        try:
            with self._ms.write() as tx:
                # Built under a temporary name so a crash never leaves a half-made <id> dir.
                tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
                try:
                    os.mkdir(f"{tmp}/fs")
                    os.chmod(f"{tmp}/fs", 0o755)  # exact mode, whatever the umask
                    if kind == Kind.ACTIVE:
                        os.mkdir(f"{tmp}/work")
                        os.chmod(f"{tmp}/work", 0o711)
                    snapshot = tx.create(kind, key, parent, labels)
                    mapping = IDMap.from_labels(snapshot.labels)
                    owner: tuple[int, int] | None = None
                    if mapping is not None:
                        # The container's root owns its upper layer (the mapped root on disk).
                        owner = mapping.root_pair()
                    elif snapshot.parent_ids:
                        # The new layer's root starts owned like the parent's root, as in containerd.
                        want = os.stat(self._upper(snapshot.parent_ids[0]))
                        owner = (want.st_uid, want.st_gid)
                    have = os.stat(f"{tmp}/fs")
                    if owner is not None and (have.st_uid, have.st_gid) != owner:
                        os.lchown(f"{tmp}/fs", *owner)
                    final = f"{self._snapshots}/{snapshot.id}"
                    os.rename(tmp, final)
                except BaseException:
                    remove_tree(tmp)
                    raise
        except BaseException:
            if final is not None:  # renamed, but the transaction did not commit
                remove_tree(final)
            raise
        return self._mounts(snapshot)
