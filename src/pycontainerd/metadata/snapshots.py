"""Namespaced snapshots: each namespace's keys mapped onto one backend snapshotter's keys.

A namespace sees only its own snapshots. Backend keys are ``<namespace>/<n>/<key>`` with a
unique ``n``, so namespaces never collide and a re-created key never reuses a stale backend
snapshot. Labels live here (only ``containerd.io/snapshot/...`` labels are passed down, as
containerd does). Removing a snapshot removes the record at once; the backend snapshot is
removed by garbage collection, children first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from pycontainerd import filters
from pycontainerd import labels as labelspec
from pycontainerd.api.containerd.events import snapshot_pb2 as snapshot_events
from pycontainerd.core.snapshots import Info, Kind, Mount, Snapshotter, Usage
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata import labels, leases
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins

BACKEND_LABEL_PREFIX = "containerd.io/snapshot/"
Publish = Callable[[str, str, Message], object]


def _kind_label(snapshotter: str) -> str:
    return f"snapshot/{snapshotter}"


def _backend_labels(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k.startswith(BACKEND_LABEL_PREFIX)}


def _adaptor(info: Info) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "name" and len(path) == 1:
            return info.name or None
        if head == "parent" and len(path) == 1:
            return info.parent or None
        if head == "kind" and len(path) == 1:
            return {Kind.VIEW: "view", Kind.ACTIVE: "active", Kind.COMMITTED: "committed"}.get(info.kind)
        if head == "labels":
            return filters.label_adaptor(info.labels, path)
        return None

    return value


class NamespacedSnapshotter:
    """One backend snapshotter, seen per namespace."""

    def __init__(
        self,
        name: str,
        db: DB,
        backend: Snapshotter,
        *,
        publish: Publish | None = None,
        on_dirty: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._db = db
        self.backend = backend
        self._publish = publish
        self._on_dirty = on_dirty

    def _emit(self, tx: Tx, ns: str, topic: str, event: Message) -> None:
        tx.publish_after_commit(self._publish, ns, topic, event)

    def _row(self, tx: Tx, ns: str, key: str) -> tuple[str, str, int, int, int] | None:
        row = tx.execute(
            "SELECT backend_key, parent, kind, created_at, updated_at FROM snapshots"
            " WHERE namespace=? AND snapshotter=? AND key=?",
            (ns, self.name, key),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def _info(self, tx: Tx, ns: str, key: str) -> Info:
        row = self._row(tx, ns, key)
        if row is None:
            raise NotFound(f'snapshot "{key}"')
        _, parent, kind, created, updated = row
        return Info(key, Kind(kind), parent, labels.get(tx, ns, _kind_label(self.name), key), created, updated)

    def backend_key(self, ctx: RequestContext, key: str) -> str:
        """The backend's key for a namespace's snapshot."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            row = self._row(tx, ns, key)
        if row is None:
            raise NotFound(f'snapshot "{key}"')
        return row[0]

    # -- reading -------------------------------------------------------------------------

    def stat(self, ctx: RequestContext, key: str) -> Info:
        """A namespace's snapshot."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            return self._info(tx, ns, key)

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> builtins.list[Info]:
        """Snapshots of the namespace matching any filter (name, parent, kind, labels)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            keys = [
                r[0]
                for r in tx.execute(
                    "SELECT key FROM snapshots WHERE namespace=? AND snapshotter=? ORDER BY key", (ns, self.name)
                )
            ]
            infos = [self._info(tx, ns, k) for k in keys]
        return [i for i in infos if filters.match_any(parsed, _adaptor(i))]

    def usage(self, ctx: RequestContext, key: str) -> Usage:
        """Disk usage of one snapshot's own layer."""
        return self.backend.usage(self.backend_key(ctx, key))

    def mounts(self, ctx: RequestContext, key: str) -> builtins.list[Mount]:
        """How to mount an active snapshot or a view."""
        return self.backend.mounts(self.backend_key(ctx, key))

    # -- changing ------------------------------------------------------------------------

    def _create(
        self, ctx: RequestContext, kind: Kind, key: str, parent: str, new_labels: Mapping[str, str] | None
    ) -> builtins.list[Mount]:
        ns = namespace_required(ctx)
        if not key:
            raise InvalidArgument("key must not be empty")
        values = labelspec.validate_all(new_labels or {})
        backend_key = f"{ns}/{time.time_ns()}/{key}"
        with self._db.write() as tx:
            nsmeta.ensure(tx, ns)
            if self._row(tx, ns, key) is not None:
                raise AlreadyExists(f'snapshot "{key}"')
            parent_backend = ""
            if parent:
                prow = self._row(tx, ns, parent)
                if prow is None:
                    raise NotFound(f"parent snapshot {parent} does not exist")
                if prow[2] != Kind.COMMITTED:
                    raise FailedPrecondition(f'parent "{parent}" is not a committed snapshot')
                parent_backend = prow[0]
            ts = now_ns()
            tx.execute(
                "INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, kind, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (ns, self.name, key, backend_key, parent, int(kind), ts, ts),
            )
            labels.replace(tx, ns, _kind_label(self.name), key, values)
            leases.attach(tx, ctx, ns, f"snapshots/{self.name}", key)
            create = self.backend.prepare if kind == Kind.ACTIVE else self.backend.view
            # Inside the transaction: if the backend fails, no record is left behind.
            mounts = create(backend_key, parent_backend, _backend_labels(values))
            self._emit(
                tx,
                ns,
                "/snapshot/prepare",
                snapshot_events.SnapshotPrepare(key=key, parent=parent, snapshotter=self.name),
            )
        return mounts

    def prepare(
        self, ctx: RequestContext, key: str, parent: str = "", new_labels: Mapping[str, str] | None = None
    ) -> builtins.list[Mount]:
        """Create an active (writable) snapshot on top of ``parent``."""
        return self._create(ctx, Kind.ACTIVE, key, parent, new_labels)

    def view(
        self, ctx: RequestContext, key: str, parent: str = "", new_labels: Mapping[str, str] | None = None
    ) -> builtins.list[Mount]:
        """Create a read-only view of ``parent``."""
        return self._create(ctx, Kind.VIEW, key, parent, new_labels)

    def commit(self, ctx: RequestContext, name: str, key: str, new_labels: Mapping[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``."""
        ns = namespace_required(ctx)
        if not name:
            raise InvalidArgument("name must not be empty")
        values = labelspec.validate_all(new_labels or {})
        new_backend = f"{ns}/{time.time_ns()}/{name}"
        with self._db.write() as tx:
            row = self._row(tx, ns, key)
            if row is None:
                raise NotFound(f'snapshot "{key}"')
            if row[2] != Kind.ACTIVE:
                raise FailedPrecondition(f'snapshot "{key}" is not active')
            if self._row(tx, ns, name) is not None:
                raise AlreadyExists(f'snapshot "{name}"')
            self.backend.commit(new_backend, row[0], _backend_labels(values))
            ts = now_ns()
            tx.execute(
                "UPDATE snapshots SET key=?, backend_key=?, kind=?, created_at=?, updated_at=?"
                " WHERE namespace=? AND snapshotter=? AND key=?",
                (name, new_backend, int(Kind.COMMITTED), ts, ts, ns, self.name, key),
            )
            labels.delete(tx, ns, _kind_label(self.name), key)
            labels.replace(tx, ns, _kind_label(self.name), name, values)
            leases.detach(tx, ctx, ns, f"snapshots/{self.name}", key)
            leases.attach(tx, ctx, ns, f"snapshots/{self.name}", name)
            self._emit(
                tx, ns, "/snapshot/commit", snapshot_events.SnapshotCommit(key=key, name=name, snapshotter=self.name)
            )

    def update(self, ctx: RequestContext, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change labels (``labels`` or ``labels.<key>`` paths; none = replace all)."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            current = self._info(tx, ns, info.name)
            new = dict(current.labels)
            if not fieldpaths:
                new = dict(info.labels)
            for path in fieldpaths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    new[key] = info.labels.get(key, "")
                elif path == "labels":
                    new = dict(info.labels)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on snapshot "{info.name}"')
            new = labelspec.validate_all({k: v for k, v in new.items() if v})
            ts = now_ns()
            labels.replace(tx, ns, _kind_label(self.name), info.name, new)
            tx.execute(
                "UPDATE snapshots SET updated_at=? WHERE namespace=? AND snapshotter=? AND key=?",
                (ts, ns, self.name, info.name),
            )
        return replace(current, labels=new, updated_at=ts)

    def remove(self, ctx: RequestContext, key: str) -> None:
        """Forget a snapshot in this namespace; the backend copy goes at the next collection."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            if self._row(tx, ns, key) is None:
                raise NotFound(f'snapshot "{key}"')
            child = tx.execute(
                "SELECT key FROM snapshots WHERE namespace=? AND snapshotter=? AND parent=? LIMIT 1",
                (ns, self.name, key),
            ).fetchone()
            if child is not None:
                raise FailedPrecondition(f'cannot remove snapshot with child: "{key}" is the parent of "{child[0]}"')
            tx.execute("DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?", (ns, self.name, key))
            labels.delete(tx, ns, _kind_label(self.name), key)
            leases.detach(tx, ctx, ns, f"snapshots/{self.name}", key)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)
            self._emit(tx, ns, "/snapshot/remove", snapshot_events.SnapshotRemove(key=key, snapshotter=self.name))

    # -- garbage collection --------------------------------------------------------------

    def referenced_backend_keys(self) -> set[str]:
        """Backend keys some namespace still records."""
        with self._db.read() as tx:
            rows = tx.execute("SELECT backend_key FROM snapshots WHERE snapshotter=?", (self.name,)).fetchall()
        return {r[0] for r in rows}

    def sweep_backend(self) -> builtins.list[str]:
        """Remove backend snapshots no namespace records, children before parents."""
        keep = self.referenced_backend_keys()
        infos = {i.name: i for i in self.backend.walk()}
        doomed = {k for k in infos if k not in keep}

        def depth(key: str) -> int:
            d, seen = 0, set()
            while key in infos and infos[key].parent and key not in seen:
                seen.add(key)
                key = infos[key].parent
                d += 1
            return d

        removed = []
        for key in sorted(doomed, key=depth, reverse=True):
            try:
                self.backend.remove(key)
            except (NotFound, FailedPrecondition):
                continue
            removed.append(key)
        return removed


def drop_namespace_rows(tx: Tx, rows: Iterable[tuple[str, str, str]]) -> None:
    """Delete snapshot records (namespace, snapshotter, key) and their labels (GC helper)."""
    for ns, snapshotter, key in rows:
        tx.execute("DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?", (ns, snapshotter, key))
        labels.delete(tx, ns, _kind_label(snapshotter), key)
