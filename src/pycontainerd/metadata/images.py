"""Images per namespace: name -> target descriptor, with labels."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from pycontainerd import filters
from pycontainerd import labels as labelspec
from pycontainerd.api.containerd.events import image_pb2 as image_events
from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor, Image
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound
from pycontainerd.metadata import labels
from pycontainerd.metadata import namespaces as nsmeta
from pycontainerd.metadata.db import DB, Tx, now_ns
from pycontainerd.namespaces import RequestContext, namespace_required

if TYPE_CHECKING:
    import builtins

KIND = "image"
Publish = Callable[[str, str, Message], object]


def validate_image(image: Image) -> None:
    """InvalidArgument for an image containerd would refuse."""
    if not image.name:
        raise InvalidArgument("image name must not be empty")
    labelspec.validate_all(image.labels)
    if not image.target.digest:
        raise InvalidArgument("Target.Digest must be set")
    try:
        parse_digest(image.target.digest)
    except InvalidArgument as exc:
        raise InvalidArgument(f"Target.Digest {image.target.digest!r} invalid: {exc.message}") from exc
    if not image.target.media_type:
        raise InvalidArgument("Target.MediaType must be set")


def _adaptor(image: Image) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        head = path[0]
        if head == "name" and len(path) == 1:
            return image.name or None
        if head == "target" and len(path) == 2:
            return {"digest": image.target.digest, "mediatype": image.target.media_type}.get(path[1]) or None
        if head == "labels":
            return filters.label_adaptor(image.labels, path)
        if head == "annotations":
            return filters.label_adaptor(image.target.annotations, path)
        return None

    return value


class ImageStore:
    """Create, read, update and delete images."""

    def __init__(self, db: DB, *, publish: Publish | None = None, on_dirty: Callable[[], None] | None = None) -> None:
        self._db = db
        self._publish = publish
        self._on_dirty = on_dirty

    def _emit(self, tx: Tx, ns: str, topic: str, event: Message) -> None:
        tx.publish_after_commit(self._publish, ns, topic, event)

    @staticmethod
    def _read(tx: Tx, ns: str, name: str) -> Image | None:
        row = tx.execute(
            "SELECT media_type, digest, size, annotations, created_at, updated_at FROM images"
            " WHERE namespace=? AND name=?",
            (ns, name),
        ).fetchone()
        if row is None:
            return None
        target = Descriptor(row[0], row[1], row[2], json.loads(row[3]))
        return Image(name, target, labels.get(tx, ns, KIND, name), row[4], row[5])

    @staticmethod
    def _write(tx: Tx, ns: str, image: Image) -> None:
        t = image.target
        tx.execute(
            "INSERT OR REPLACE INTO images (namespace, name, media_type, digest, size, annotations, created_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (
                ns,
                image.name,
                t.media_type,
                t.digest,
                t.size,
                json.dumps(t.annotations, sort_keys=True),
                image.created_at,
                image.updated_at,
            ),
        )
        labels.replace(tx, ns, KIND, image.name, image.labels)

    def get(self, ctx: RequestContext, name: str) -> Image:
        """One image; NotFound if absent."""
        ns = namespace_required(ctx)
        with self._db.read() as tx:
            image = self._read(tx, ns, name)
        if image is None:
            raise NotFound(f'image "{name}"')
        return image

    def list(self, ctx: RequestContext, filter_texts: Sequence[str] = ()) -> builtins.list[Image]:
        """Images matching any filter (fields: name, target.digest, target.mediatype, labels, annotations)."""
        ns = namespace_required(ctx)
        parsed = filters.parse_all(filter_texts)
        with self._db.read() as tx:
            names = [r[0] for r in tx.execute("SELECT name FROM images WHERE namespace=? ORDER BY name", (ns,))]
            images = [img for n in names if (img := self._read(tx, ns, n)) is not None]
        return [i for i in images if filters.match_any(parsed, _adaptor(i))]

    def create(self, ctx: RequestContext, image: Image) -> Image:
        """Store a new image; AlreadyExists if the name is taken."""
        ns = namespace_required(ctx)
        validate_image(image)
        ts = now_ns()
        image = replace(image, created_at=ts, updated_at=ts)
        with self._db.write() as tx:
            nsmeta.ensure(tx, ns)
            if self._read(tx, ns, image.name) is not None:
                raise AlreadyExists(f'image "{image.name}"')
            self._write(tx, ns, image)
            self._emit(tx, ns, "/images/create", image_events.ImageCreate(name=image.name, labels=image.labels))
        return image

    def update(self, ctx: RequestContext, image: Image, fieldpaths: Sequence[str] = ()) -> Image:
        """Update labels, target or annotations (containerd's field paths)."""
        ns = namespace_required(ctx)
        if not image.name:
            raise InvalidArgument("image name is required for update")
        with self._db.write() as tx:
            current = self._read(tx, ns, image.name)
            if current is None:
                raise NotFound(f'image "{image.name}"')
            updated = current
            if not fieldpaths:
                updated = replace(image, created_at=current.created_at)
            for path in fieldpaths:
                if path.startswith("labels."):
                    key = path[len("labels.") :]
                    updated = replace(updated, labels={**updated.labels, key: image.labels.get(key, "")})
                elif path.startswith("annotations."):
                    key = path[len("annotations.") :]
                    ann = {**updated.target.annotations, key: image.target.annotations.get(key, "")}
                    updated = replace(updated, target=replace(updated.target, annotations=ann))
                elif path == "labels":
                    updated = replace(updated, labels=dict(image.labels))
                elif path == "target":
                    updated = replace(updated, target=image.target)
                elif path == "annotations":
                    updated = replace(
                        updated, target=replace(updated.target, annotations=dict(image.target.annotations))
                    )
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on image "{image.name}"')
            updated = replace(
                updated,
                labels={k: v for k, v in updated.labels.items() if v},
                target=replace(updated.target, annotations={k: v for k, v in updated.target.annotations.items() if v}),
                updated_at=now_ns(),
            )
            validate_image(updated)
            self._write(tx, ns, updated)
            if self._on_dirty is not None and current.target.digest != updated.target.digest:
                tx.after_commit(self._on_dirty)
            self._emit(tx, ns, "/images/update", image_events.ImageUpdate(name=updated.name, labels=updated.labels))
        return updated

    def delete(self, ctx: RequestContext, name: str, *, target_digest: str = "") -> None:
        """Delete an image; with ``target_digest``, only if it still points there."""
        ns = namespace_required(ctx)
        with self._db.write() as tx:
            current = self._read(tx, ns, name)
            if current is None:
                raise NotFound(f'image "{name}"')
            if target_digest and current.target.digest != target_digest:
                raise NotFound(f'image "{name}" has target {current.target.digest}, not {target_digest}')
            tx.execute("DELETE FROM images WHERE namespace=? AND name=?", (ns, name))
            labels.delete(tx, ns, KIND, name)
            if self._on_dirty is not None:
                tx.after_commit(self._on_dirty)
            self._emit(tx, ns, "/images/delete", image_events.ImageDelete(name=name))
