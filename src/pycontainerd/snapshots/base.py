"""What the native and overlayfs snapshotters share: a metastore, one directory per snapshot.

Subclasses say where a snapshot's own layer lives (:meth:`_layer_dir`), how to mount a
snapshot (:meth:`_mounts`) and how to build a new one on disk (:meth:`_create`); reading,
labels, commit, removal and crash clean-up are the same for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Info, Kind, Mount, Usage
from pycontainerd.snapshots.storage import MetaStore, Snapshot, disk_usage, remove_orphans, remove_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence


class MetastoreSnapshotter:
    """A snapshotter keeping records in ``<root>/metadata.db`` and layers in ``<root>/snapshots/<id>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._snapshots = self.root / "snapshots"
        self._snapshots.mkdir(mode=0o700, exist_ok=True)
        self._ms = MetaStore(self.root / "metadata.db")
        self.cleanup()

    # -- what subclasses provide --------------------------------------------------------

    def _layer_dir(self, id_: int) -> str:
        """The directory holding snapshot ``id_``'s own files (measured for usage)."""
        raise NotImplementedError

    def _mounts(self, s: Snapshot) -> list[Mount]:
        raise NotImplementedError

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        raise NotImplementedError

    # -- reading ------------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        """The snapshot ``key``; NotFound if it does not exist."""
        with self._ms.read() as tx:
            return tx.get(key).info

    def usage(self, key: str) -> Usage:
        """Recorded usage of a committed snapshot; measured for an active one."""
        with self._ms.read() as tx:
            record = tx.get(key)
        if record.info.kind == Kind.ACTIVE:
            return disk_usage(self._layer_dir(record.id))
        return record.usage

    def mounts(self, key: str) -> list[Mount]:
        """Mounts of an active snapshot or view; FailedPrecondition for a committed one."""
        with self._ms.read() as tx:
            snapshot = tx.snapshot(key)
        return self._mounts(snapshot)

    def walk(self) -> Iterator[Info]:
        """Every snapshot (read in one transaction, then yielded)."""
        with self._ms.read() as tx:
            return iter(tx.walk())

    # -- changing -----------------------------------------------------------------------

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change labels only (``labels``, ``labels.<k>``); other paths are InvalidArgument."""
        with self._ms.write() as tx:
            return tx.update(info, fieldpaths)

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create an active snapshot on top of the committed ``parent`` (or empty)."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create a read-only view of the committed ``parent``."""
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Commit the active ``key`` as ``name`` (labels replaced); a view cannot be committed."""
        with self._ms.write() as tx:
            record = tx.get(key)
            usage = disk_usage(self._layer_dir(record.id)) if record.info.kind == Kind.ACTIVE else Usage()
            tx.commit(key, name, usage, labels)

    def remove(self, key: str) -> None:
        """Remove ``key`` and its directory; FailedPrecondition while it has children."""
        remove_snapshot(self._ms, key, self._snapshots)

    def cleanup(self) -> list[str]:
        """Delete directories no record owns (crash leftovers); returns their names."""
        return remove_orphans(self._ms, self._snapshots)

    def close(self) -> None:
        """Close the metastore (idempotent)."""
        self._ms.close()
