"""Container records per namespace."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from google.protobuf import any_pb2
from google.protobuf.message import Message

from pycontainerd import filters, identifiers
from pycontainerd import labels as labelspec
from pycontainerd.api.containerd.events import container_pb2 as container_events
from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.metadata import labels
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins

KIND = "container"
Publish = Callable[[str, str, Message], object]


# Any values are stored as serialized google.protobuf.Any (the OCI spec is kilobytes of JSON:
# no re-encoding); extensions as a serialized Struct-free map: key -> serialized Any.
def pack_any(value: AnyValue | None) -> bytes | None:
    if value is None:
        return None
    return any_pb2.Any(type_url=value.type_url, value=value.value).SerializeToString()


def unpack_any(blob: bytes | None) -> AnyValue | None:
    if blob is None:
        return None
    msg = any_pb2.Any.FromString(blob)
    return AnyValue(msg.type_url, msg.value)


def pack_extensions(extensions: dict[str, AnyValue]) -> bytes:
    packed = {k: base64.b64encode(pack_any(v) or b"").decode() for k, v in extensions.items()}
    return json.dumps(packed, sort_keys=True).encode()


def unpack_extensions(blob: bytes | None) -> dict[str, AnyValue]:
    if not blob:
        return {}
    out: dict[str, AnyValue] = {}
    for key, text in json.loads(blob).items():
        value = unpack_any(base64.b64decode(text))
        if value is not None:
            out[key] = value
    return out


def validate_container(container: Container) -> None:
    """InvalidArgument for a container record containerd would refuse."""
    try:
        identifiers.validate(container.id)
    except InvalidArgument as exc:
        raise InvalidArgument(f"container.ID: {exc.message}") from exc
    if any(not k for k in container.extensions):
        raise InvalidArgument("container.Extension keys must not be zero-length")
    for key, value in container.labels.items():
        labelspec.validate(key, value)
    if not container.runtime.name:
        raise InvalidArgument("must specify a runtime name")
    if container.spec is None:
        raise InvalidArgument("container.Spec must be set")
    if container.snapshot_key and not container.snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")


def _adaptor(c: Container) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "id" and len(path) == 1:
            return c.id or None
        if head == "image" and len(path) == 1:
            return c.image or None
        if list(path) == ["runtime", "name"]:
            return c.runtime.name or None
        if head == "labels":
            return filters.label_adaptor(c.labels, path)
        return None

    return value


UPDATABLE = ("labels", "spec", "extensions", "image", "snapshotkey")


class ContainerStore:
    """Create, read, update and delete container records."""

    def __init__(self, db: DB, *, publish: Publish | None = None, on_dirty: Callable[[], None] | None = None) -> None:
        self._db = db
        self._publish = publish
        self._on_dirty = on_dirty

    def _emit(self, tx: Tx, ns: str, topic: str, event: Message) -> None:
        tx.publish_after_commit(self._publish, ns, topic, event)

    @staticmethod
    def _read(tx: Tx, ns: str, cid: str) -> Container | None:
        row = tx.execute(
            "SELECT image, runtime_name, runtime_options, spec, snapshotter, snapshot_key, sandbox_id, extensions,"
            " created_at, updated_at FROM containers WHERE namespace=? AND id=?",
            (ns, cid),
        ).fetchone()
        if row is None:
            return None
        return Container(
            id=cid,
            runtime=Runtime(row[1], unpack_any(row[2])),
            spec=unpack_any(row[3]),
            image=row[0],
            snapshotter=row[4],
            snapshot_key=row[5],
            sandbox=row[6],
            labels=labels.get(tx, ns, KIND, cid),
            extensions=unpack_extensions(row[7]),
            created_at=row[8],
            updated_at=row[9],
        )

    @staticmethod
    def _write(tx: Tx, ns: str, c: Container) -> None:
        tx.execute(
            "INSERT OR REPLACE INTO containers (namespace, id, image, runtime_name, runtime_options, spec, snapshotter,"
            " snapshot_key, sandbox_id, extensions, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ns,
                c.id,
                c.image,
                c.runtime.name,
                pack_any(c.runtime.options),
                pack_any(c.spec),
                c.snapshotter,
                c.snapshot_key,
                c.sandbox,
                pack_extensions(c.extensions),
                c.created_at,
                c.updated_at,
            ),
        )
        labels.replace(tx, ns, KIND, c.id, c.labels)

    def get(self, ctx: RequestContext, cid: str) -> Container:
        """One container; NotFound if absent."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            c = self._read(tx, ns, cid)
        if c is None:
            raise NotFound(f'container "{cid}"')
        return c

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> builtins.list[Container]:
        """Containers matching any filter (fields: id, image, runtime.name, labels)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            ids = [r[0] for r in tx.execute("SELECT id FROM containers WHERE namespace=? ORDER BY id", (ns,))]
            found = [c for i in ids if (c := self._read(tx, ns, i)) is not None]
        return [c for c in found if filters.match_any(parsed, _adaptor(c))]

    def create(self, ctx: RequestContext, container: Container) -> Container:
        """Store a new container; AlreadyExists if the ID is taken."""
        ns = namespace_required(ctx)
        validate_container(container)
        ts = now_ns()
        container = replace(container, created_at=ts, updated_at=ts)
        with self._db.write() as tx:
            nsmeta.ensure(tx, ns)
            if self._read(tx, ns, container.id) is not None:
                raise AlreadyExists(f'container "{container.id}"')
            self._write(tx, ns, container)
            self._emit(
                tx,
                ns,
                "/containers/create",
                container_events.ContainerCreate(
                    id=container.id,
                    image=container.image,
                    runtime=container_events.ContainerCreate.Runtime(name=container.runtime.name),
                ),
            )
        return container

    def update(self, ctx: RequestContext, container: Container, fieldpaths: Sequence[str] = ()) -> Container:
        """Update mutable fields (containerd's field paths); snapshotter and runtime are immutable."""
        ns = namespace_required(ctx)
        if not container.id:
            raise InvalidArgument("must specify a container id")
        with self._db.write() as tx:
            current = self._read(tx, ns, container.id)
            if current is None:
                raise NotFound(f'container "{container.id}"')
            paths = list(fieldpaths)
            if not paths:
                paths = list(UPDATABLE)
                if current.snapshotter != container.snapshotter:
                    raise InvalidArgument("container.Snapshotter field is immutable")
                if current.runtime.name != container.runtime.name:
                    raise InvalidArgument("container.Runtime.Name field is immutable")
            updated = current
            for path in paths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    updated = replace(updated, labels={**updated.labels, key: container.labels.get(key, "")})
                elif path.startswith("extensions."):
                    key = path[len("extensions.") :]
                    ext = dict(updated.extensions)
                    if key in container.extensions:
                        ext[key] = container.extensions[key]
                    else:
                        ext.pop(key, None)
                    updated = replace(updated, extensions=ext)
                elif path == "labels":
                    updated = replace(updated, labels=dict(container.labels))
                elif path == "spec":
                    updated = replace(updated, spec=container.spec)
                elif path == "extensions":
                    updated = replace(updated, extensions=dict(container.extensions))
                elif path == "image":
                    updated = replace(updated, image=container.image)
                elif path == "snapshotkey":
                    updated = replace(updated, snapshot_key=container.snapshot_key)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on "{container.id}"')
            updated = replace(updated, labels={k: v for k, v in updated.labels.items() if v}, updated_at=now_ns())
            validate_container(updated)
            self._write(tx, ns, updated)
            if self._on_dirty is not None and updated.snapshot_key != current.snapshot_key:
                tx.after_commit(self._on_dirty)
            self._emit(
                tx,
                ns,
                "/containers/update",
                container_events.ContainerUpdate(
                    id=updated.id,
                    image=updated.image,
                    labels=updated.labels,
                    snapshot_key=updated.snapshot_key,
                ),
            )
        return updated

    def delete(self, ctx: RequestContext, cid: str) -> None:
        """Delete a container record (its snapshot goes at the next collection)."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            if self._read(tx, ns, cid) is None:
                raise NotFound(f'container "{cid}"')
            tx.execute("DELETE FROM containers WHERE namespace=? AND id=?", (ns, cid))
            labels.delete(tx, ns, KIND, cid)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)
            self._emit(tx, ns, "/containers/delete", container_events.ContainerDelete(id=cid))
