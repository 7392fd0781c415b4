"""Namespaces: created explicitly or by the first object stored in them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pycontainerd import identifiers
from pycontainerd import labels as labelspec
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata import labels
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.metadata.schema import BLOCKING_TABLES, NAMESPACED_TABLES

KIND = "namespace"


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace and its labels."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


NamespaceEvent = Callable[[str, Namespace], None]
"""Called after commit with (action, namespace); action is create, update or delete."""


def ensure(tx: Tx, name: str) -> None:
    """Create namespace ``name`` if it does not exist yet (first object stored in it)."""
    ts = now_ns()
    tx.execute("INSERT OR IGNORE INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)", (name, ts, ts))


class NamespaceStore:
    """Create, read, update and delete namespaces."""

    def __init__(self, db: DB, *, on_event: NamespaceEvent | None = None) -> None:
        self._db = db
        self._on_event = on_event

    def _emit(self, tx: Tx, action: str, ns: Namespace) -> None:
        if self._on_event is not None:
            on_event = self._on_event
            tx.after_commit(lambda: on_event(action, ns))

    def create(self, name: str, ns_labels: Mapping[str, str] | None = None) -> Namespace:
        """Create a namespace; AlreadyExists if it exists."""
        identifiers.validate(name)
        values = labelspec.validate_all(ns_labels or {})
        with self._db.write() as tx:
            if tx.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise AlreadyExists(f'namespace "{name}"')
            ensure(tx, name)
            labels.replace(tx, name, KIND, name, values)
            ns = Namespace(name, values)
            self._emit(tx, "create", ns)
        return ns

    def get(self, name: str) -> Namespace:
        """One namespace; NotFound if absent."""
        with self._db.read() as tx:
            if not tx.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise NotFound(f'namespace "{name}"')
            return Namespace(name, labels.get(tx, name, KIND, name))

    def list(self) -> list[Namespace]:
        """Every namespace, sorted by name."""
        with self._db.read() as tx:
            names = [row[0] for row in tx.execute("SELECT name FROM namespaces ORDER BY name")]
            return [Namespace(n, labels.get(tx, n, KIND, n)) for n in names]

    def update(self, name: str, ns_labels: Mapping[str, str], fieldpaths: Sequence[str] = ()) -> Namespace:
        """Update labels, as containerd does.

        Without ``fieldpaths`` the label set is replaced. ``labels.<key>`` sets that one key
        from ``ns_labels`` (removing it when absent or empty). Any other path is
        InvalidArgument. Like containerd, updating a namespace that does not exist creates it.
        """
        identifiers.validate(name)
        with self._db.write() as tx:
            created = not tx.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone()
            ensure(tx, name)
            current = labels.get(tx, name, KIND, name)
            if not fieldpaths:
                current = dict(ns_labels)
            for path in fieldpaths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    value = ns_labels.get(key, "")
                    if value:
                        current[key] = value
                    else:
                        current.pop(key, None)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field')
            labelspec.validate_all(current)
            labels.replace(tx, name, KIND, name, current)
            tx.execute("UPDATE namespaces SET updated_at=? WHERE name=?", (now_ns(), name))
            ns = Namespace(name, current)
            self._emit(tx, "create" if created else "update", ns)
        return ns

    def delete(self, name: str) -> None:
        """Delete an empty namespace; FailedPrecondition if it still holds objects."""
        with self._db.write() as tx:
            if not tx.execute("SELECT 1 FROM namespaces WHERE name=?", (name,)).fetchone():
                raise NotFound(f'namespace "{name}"')
            holding = [
                what
                for table, what in BLOCKING_TABLES
                if tx.execute(f"SELECT 1 FROM {table} WHERE namespace=? LIMIT 1", (name,)).fetchone()
            ]
            holding += [
                f'snapshots on "{row[0]}" snapshotter'
                for row in tx.execute(
                    "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace=? ORDER BY snapshotter",
                    (name,),
                )
            ]
            if holding:
                raise FailedPrecondition(f'namespace "{name}" must be empty, but it still has {", ".join(holding)}')
            # Like deleting containerd's namespace bucket: whatever else it held goes with it.
            for table in NAMESPACED_TABLES:
                tx.execute(f"DELETE FROM {table} WHERE namespace=?", (name,))
            tx.execute("DELETE FROM lease_resources WHERE namespace=?", (name,))
            tx.execute("DELETE FROM labels WHERE namespace=?", (name,))
            tx.execute("DELETE FROM namespaces WHERE name=?", (name,))
            self._emit(tx, "delete", Namespace(name))
