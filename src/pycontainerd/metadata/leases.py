"""Leases: named holds that keep content, ingests and snapshots from garbage collection.

While a request carries a ``containerd-lease`` header, everything it creates is attached to
that lease (``lease_resources``). A lease with ``containerd.io/gc.expire`` in the past stops
protecting its resources at the next collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd import filters
from pycontainerd import labels as labelspec
from pycontainerd.core.leases import Lease, Resource
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.metadata import labels
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Mapping, Sequence

KIND = "lease"
RESOURCE_CONTENT = "content"
RESOURCE_INGESTS = "ingests"
RESOURCE_SNAPSHOTS_PREFIX = "snapshots/"


def validate_resource(resource: Resource) -> None:
    """InvalidArgument for unknown resource types or malformed IDs."""
    if resource.type in (RESOURCE_CONTENT, RESOURCE_INGESTS):
        if not resource.id:
            raise InvalidArgument("resource id must not be empty")
        return
    if resource.type.startswith(RESOURCE_SNAPSHOTS_PREFIX) and len(resource.type) > len(RESOURCE_SNAPSHOTS_PREFIX):
        if not resource.id:
            raise InvalidArgument("resource id must not be empty")
        return
    raise InvalidArgument(f"unsupported resource type {resource.type}")


def lease_exists(tx: Tx, namespace: str, lease_id: str) -> bool:
    """Whether ``lease_id`` exists in ``namespace``."""
    row = tx.execute("SELECT 1 FROM leases WHERE namespace=? AND id=?", (namespace, lease_id)).fetchone()
    return row is not None


def attach(tx: Tx, ctx: RequestContext, namespace: str, kind: str, resource: str) -> bool:
    """Attach ``resource`` to the request's lease, if it has one; NotFound if that lease is gone.

    Returns whether a lease holds it now.
    """
    if not ctx.lease:
        return False
    if not lease_exists(tx, namespace, ctx.lease):
        raise NotFound(f'lease "{ctx.lease}" does not exist')
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, resource) VALUES (?, ?, ?, ?)",
        (namespace, ctx.lease, kind, resource),
    )
    return True


def detach(tx: Tx, ctx: RequestContext, namespace: str, kind: str, resource: str) -> None:
    """Remove ``resource`` from the request's lease (no-op without a lease)."""
    if ctx.lease:
        tx.execute(
            "DELETE FROM lease_resources WHERE namespace=? AND lease=? AND kind=? AND resource=?",
            (namespace, ctx.lease, kind, resource),
        )


def _adaptor(lease: Lease) -> filters.Adaptor:
    def field_value(path: Sequence[str]) -> str | None:
        if path[0] == "id" and len(path) == 1:
            return lease.id or None
        if path[0] == "labels":
            return filters.label_adaptor(lease.labels, path)
        return None

    return field_value


class LeaseStore:
    """Create, list and delete leases, and manage what they hold."""

    def __init__(self, db: DB, *, on_dirty: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_dirty = on_dirty

    def create(self, ctx: RequestContext, lease_id: str, lease_labels: Mapping[str, str] | None = None) -> Lease:
        """Create a lease; AlreadyExists if the ID is taken in this namespace."""
        ns = namespace_required(ctx)
        # containerd accepts any non-empty lease ID (ctr generates ones like "209405126-_kUa").
        if not lease_id:
            raise InvalidArgument("lease id must not be empty")
        values = labelspec.validate_all(lease_labels or {})
        with self._db.write() as tx:
            nsmeta.ensure(tx, ns)
            if lease_exists(tx, ns, lease_id):
                raise AlreadyExists(f'lease "{lease_id}"')
            created = now_ns()
            tx.execute("INSERT INTO leases (namespace, id, created_at) VALUES (?, ?, ?)", (ns, lease_id, created))
            labels.replace(tx, ns, KIND, lease_id, values)
        return Lease(lease_id, created, values)

    def delete(self, ctx: RequestContext, lease_id: str) -> None:
        """Delete a lease (its resources lose that hold; GC decides their fate)."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            if not lease_exists(tx, ns, lease_id):
                raise NotFound(f'lease "{lease_id}"')
            tx.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lease_id))
            tx.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=?", (ns, lease_id))
            labels.delete(tx, ns, KIND, lease_id)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> list[Lease]:
        """Leases of the namespace matching any of ``filter_texts``."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            rows = tx.execute("SELECT id, created_at FROM leases WHERE namespace=? ORDER BY id", (ns,)).fetchall()
            all_labels = labels.get_many(tx, ns, KIND)
        leases = [Lease(lid, created, all_labels.get(lid, {})) for lid, created in rows]
        return [lease for lease in leases if filters.match_any(parsed, _adaptor(lease))]

    def add_resource(self, ctx: RequestContext, lease_id: str, resource: Resource) -> None:
        """Make ``lease_id`` hold ``resource``."""
        ns = namespace_required(ctx)
        validate_resource(resource)
        with self._db.write() as tx:
            if not lease_exists(tx, ns, lease_id):
                raise NotFound(f'lease "{lease_id}"')
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, resource) VALUES (?,?,?,?)",
                (ns, lease_id, resource.type, resource.id),
            )

    def delete_resource(self, ctx: RequestContext, lease_id: str, resource: Resource) -> None:
        """Stop ``lease_id`` holding ``resource``."""
        ns = namespace_required(ctx)
        validate_resource(resource)
        with self._db.write() as tx:
            if not lease_exists(tx, ns, lease_id):
                raise NotFound(f'lease "{lease_id}"')
            tx.execute(
                "DELETE FROM lease_resources WHERE namespace=? AND lease=? AND kind=? AND resource=?",
                (ns, lease_id, resource.type, resource.id),
            )
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)

    def list_resources(self, ctx: RequestContext, lease_id: str) -> builtins.list[Resource]:
        """What ``lease_id`` holds."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            if not lease_exists(tx, ns, lease_id):
                raise NotFound(f'lease "{lease_id}"')
            rows = tx.execute(
                "SELECT resource, kind FROM lease_resources WHERE namespace=? AND lease=? ORDER BY kind, resource",
                (ns, lease_id),
            ).fetchall()
        return [Resource(rid, kind) for rid, kind in rows]
