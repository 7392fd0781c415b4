"""The metastore of one snapshotter: which snapshots exist, their kinds, parents and labels.

Every backend keeps its records in ``<root>/metadata.db`` (SQLite, WAL, ``synchronous=FULL``)
and its data in ``<root>/snapshots/<id>``. The numeric ID names the directory, so committing
(a rename of the *key*) never moves data. Schema (version 1, in ``PRAGMA user_version``)::

    snapshots(id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a stale dir cannot alias
              key TEXT UNIQUE, kind INTEGER,          -- core.snapshots.Kind values
              parent_id INTEGER -> snapshots(id),     -- a parent is always COMMITTED
              labels TEXT,                            -- JSON object
              created_at, updated_at INTEGER,         -- ns since the epoch
              size, inodes INTEGER)                   -- usage recorded at commit

Rules: one public call is one transaction (:meth:`MetaStore.write` / :meth:`MetaStore.read`),
and a single lock serialises them, since every thread shares one connection. A snapshot
with children cannot be removed; only ACTIVE snapshots can be committed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pycontainerd.core.snapshots import Info, Kind, Usage
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    labels TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX snapshots_parent ON snapshots(parent_id);
"""

# The parent chain, closest first: the order overlayfs wants its lowerdirs in.
_CHAIN = """
WITH RECURSIVE chain(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id
)
SELECT id FROM chain ORDER BY depth
"""

_SELECT = (
    "SELECT s.id, s.key, s.kind, COALESCE(p.key, ''), s.labels, s.created_at, s.updated_at, s.size, s.inodes"
    " FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An active snapshot or view as a backend needs it to build mounts.

    Attributes:
        id: the snapshot's own ID (its directory is ``snapshots/<id>``).
        kind: ACTIVE or VIEW.
        parent_ids: IDs of the parent chain, closest parent first.
        labels: the snapshot's labels (e.g. the ID mappings an overlay mount is made with).
    """

    id: int
    kind: Kind
    parent_ids: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Record:
    """Everything stored about one snapshot."""

    id: int
    info: Info
    usage: Usage


def _row_to_record(row: tuple[int, str, int, str, str, int, int, int, int]) -> Record:
    id_, key, kind, parent, labels, created, updated, size, inodes = row
    info = Info(key, Kind(kind), parent, dict(json.loads(labels)), created, updated)
    return Record(id_, info, Usage(size, inodes))


def _dump_labels(labels: Mapping[str, str]) -> str:
    # Empty values mean "unset", as in containerd's label buckets.
    return json.dumps({k: v for k, v in labels.items() if v}, sort_keys=True)


class Tx:
    """The operations of one transaction; obtained from :class:`MetaStore`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _find(self, key: str) -> Record | None:
        row = self._conn.execute(f"{_SELECT} WHERE s.key = ?", (key,)).fetchone()
        return None if row is None else _row_to_record(row)

    def get(self, key: str) -> Record:
        """The record of ``key``; NotFound if there is none."""
        record = self._find(key)
        if record is None:
            raise NotFound(f"snapshot {key} does not exist")
        return record

    def parent_chain(self, id_: int) -> tuple[int, ...]:
        """IDs from ``id_`` down to the base layer, ``id_`` first."""
        return tuple(r[0] for r in self._conn.execute(_CHAIN, (id_,)))

    def snapshot(self, key: str) -> Snapshot:
        """An active snapshot or view; FailedPrecondition for a committed one."""
        record = self.get(key)
        if record.info.kind not in (Kind.ACTIVE, Kind.VIEW):
            raise FailedPrecondition(f"snapshot {key} is not active or view")
        return Snapshot(record.id, record.info.kind, self.parent_chain(record.id)[1:], record.info.labels)

    def create(self, kind: Kind, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> Snapshot:
        """Record a new ACTIVE snapshot or VIEW on top of the committed ``parent``."""
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise InvalidArgument(f"snapshot kind {kind.name} cannot be created, only ACTIVE or VIEW")
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        parent_id: int | None = None
        if parent:
            prec = self._find(parent)
            if prec is None:
                raise NotFound(f"parent snapshot {parent} does not exist")
            if prec.info.kind != Kind.COMMITTED:
                raise FailedPrecondition(f"parent {parent} is not committed")
            parent_id = prec.id
        if self._find(key) is not None:
            raise AlreadyExists(f"snapshot {key} already exists")
        now = time.time_ns()
        cur = self._conn.execute(
            "INSERT INTO snapshots (key, kind, parent_id, labels, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            (key, int(kind), parent_id, _dump_labels(labels or {}), now, now),
        )
        id_ = cur.lastrowid
        assert id_ is not None
        parents = self.parent_chain(parent_id) if parent_id is not None else ()
        return Snapshot(id_, kind, parents, json.loads(_dump_labels(labels or {})))

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change the labels of ``info.name`` (the only mutable field); returns the new Info.

        ``labels`` replaces all labels, ``labels.<k>`` sets (or, when absent from
        ``info.labels``, removes) one; no fieldpaths means ``labels``.
        """
        current = self.get(info.name).info
        labels = dict(current.labels)
        for path in fieldpaths or ("labels",):
            if path == "labels":
                labels = dict(info.labels)
            elif path.startswith("labels."):
                name = path[len("labels.") :]
                labels[name] = info.labels.get(name, "")
            else:
                raise InvalidArgument(f"cannot update {path!r} field on snapshot {info.name!r}")
        stored = _dump_labels(labels)
        now = max(time.time_ns(), current.created_at)
        self._conn.execute("UPDATE snapshots SET labels=?, updated_at=? WHERE key=?", (stored, now, info.name))
        return Info(current.name, current.kind, current.parent, json.loads(stored), current.created_at, now)

    def commit(self, key: str, name: str, usage: Usage, labels: Mapping[str, str] | None = None) -> int:
        """Turn the ACTIVE ``key`` into the COMMITTED ``name``, keeping its ID (and directory).

        Labels are replaced by ``labels``, not inherited, and the timestamps restart, as in
        containerd. Returns the ID.
        """
        if not name:
            raise InvalidArgument("committed snapshot name must not be empty")
        record = self.get(key)
        if record.info.kind != Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key} is not active")
        if self._find(name) is not None:
            raise AlreadyExists(f"snapshot {name} already exists")
        now = time.time_ns()
        self._conn.execute(
            "UPDATE snapshots SET key=?, kind=?, labels=?, created_at=?, updated_at=?, size=?, inodes=? WHERE id=?",
            (name, int(Kind.COMMITTED), _dump_labels(labels or {}), now, now, usage.size, usage.inodes, record.id),
        )
        return record.id

    def remove(self, key: str) -> tuple[int, Kind]:
        """Forget ``key``; returns its ID and kind. FailedPrecondition while it has children."""
        record = self.get(key)
        child = self._conn.execute("SELECT key FROM snapshots WHERE parent_id=? LIMIT 1", (record.id,)).fetchone()
        if child is not None:
            raise FailedPrecondition(f"cannot remove snapshot {key} with child {child[0]}")
        self._conn.execute("DELETE FROM snapshots WHERE id=?", (record.id,))
        return record.id, record.info.kind

    def walk(self) -> list[Info]:
        """Every snapshot, ordered by key."""
        return [_row_to_record(r).info for r in self._conn.execute(f"{_SELECT} ORDER BY s.key")]

    def ids(self) -> dict[int, str]:
        """Every snapshot ID with its key."""
        return {r[0]: r[1] for r in self._conn.execute("SELECT id, key FROM snapshots")}


class MetaStore:
    """``metadata.db`` of one snapshotter root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # isolation_level=None: transactions are begun explicitly, never implicitly by sqlite3.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise FailedPrecondition(f"snapshot metadata {self.path} has schema {version}, newer than {SCHEMA_VERSION}")
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise FailedPrecondition("snapshotter is closed")
        return self._conn

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A read-write transaction, committed when the block exits normally."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent read-only view for the duration of the block."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield Tx(conn)
            finally:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close the database; further calls fail with FailedPrecondition. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def disk_usage(root: str) -> Usage:
    """Allocated bytes (``st_blocks * 512``, like containerd) and inodes under ``root``.

    Symlinks are not followed, the root itself counts, and a hard-linked inode counts once.
    """
    seen: set[tuple[int, int]] = set()
    size = 0
    st = os.lstat(root)
    seen.add((st.st_dev, st.st_ino))
    size += st.st_blocks * 512
    stack = [root] if stat.S_ISDIR(st.st_mode) else []
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                est = entry.stat(follow_symlinks=False)
                inode = (est.st_dev, est.st_ino)
                if inode not in seen:
                    seen.add(inode)
                    size += est.st_blocks * 512
                if stat.S_ISDIR(est.st_mode):
                    stack.append(entry.path)
    return Usage(size=size, inodes=len(seen))


def remove_tree(path: str | Path) -> None:
    """Delete a directory tree, logging (not raising) failures; a vanished entry is fine.

    Two removers may race on one ``removing-<id>`` dir (``remove`` and ``cleanup``).
    """

    def onerror(func: object, p: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            log.warning("failed to remove %s: %s", p, exc_info[1])

    shutil.rmtree(path, onerror=onerror)


def remove_snapshot(ms: MetaStore, key: str, snapshots_dir: Path) -> None:
    """Forget ``key`` and delete its ``snapshots_dir/<id>`` directory.

    Inside the transaction the directory is renamed to ``removing-<id>``: once the record
    is gone no reader can reach it, and a crash mid-delete leaves only an orphan that
    :func:`remove_orphans` deletes. If the transaction fails the rename is undone.
    """
    renamed: str | None = None
    path = ""
    try:
        with ms.write() as tx:
            id_, _ = tx.remove(key)
            path = f"{snapshots_dir}/{id_}"
            with contextlib.suppress(FileNotFoundError):  # e.g. a native view owns no directory
                os.rename(path, f"{snapshots_dir}/removing-{id_}")
                renamed = f"{snapshots_dir}/removing-{id_}"
    except BaseException:
        if renamed is not None:
            os.rename(renamed, path)
        raise
    if renamed is not None:
        remove_tree(renamed)


def remove_orphans(ms: MetaStore, snapshots_dir: Path) -> list[str]:
    """Delete entries of ``snapshots_dir`` no record owns (crash leftovers); returns them.

    Runs under the write lock, and directories are only created under that lock, so an
    in-flight ``new-*`` directory is never mistaken for an orphan.
    """
    removed = []
    with ms.write() as tx:
        owned = {str(i) for i in tx.ids()}
        for entry in os.scandir(snapshots_dir):
            if entry.name not in owned:
                log.info("removing orphan snapshot directory %s", entry.path)
                remove_tree(entry.path)
                removed.append(entry.name)
    return removed
