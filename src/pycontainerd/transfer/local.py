"""The local transferrer: import, export, tag, pull and push against this daemon's stores.

Each transfer runs under a lease (the caller's, or a temporary one removed at the end), so
the garbage collector never takes a blob or snapshot between its arrival and the image
record that keeps it. Metadata calls happen on the event loop; archive parsing and layer
extraction run in worker threads, which reach the metadata through :class:`LoopBridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import uuid
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pycontainerd.content.reader import open_blob
from pycontainerd.core.images import Descriptor, Image
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from pycontainerd.images.manifest import INDEXES, MANIFESTS, index_entries, manifests
from pycontainerd.images.platforms import Platform, matches
from pycontainerd.images.unpack import LayerOpener, LayerReady, unpack
from pycontainerd.namespaces import RequestContext
from pycontainerd.remotes.limits import Limits
from pycontainerd.transfer.archive import (
    IMAGE_NAME_ANNOTATION,
    REF_NAME_ANNOTATION,
    children,
    export_archive,
    import_archive,
)
from pycontainerd.transfer.bytestream import BlockingReader, ByteReader, ByteWriter, LoopBridge
from pycontainerd.transfer.objects import (
    ExportStream,
    ImageStoreTarget,
    ImportStream,
    Progress,
    ProgressFn,
    ReadStream,
    Reference,
    Registry,
    SnapshotTarget,
    Unpack,
    WriteStream,
    ref_key,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from pycontainerd.diff.plugin import OrderedDiffers
    from pycontainerd.metadata.content import ContentStore
    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.metadata.snapshots import NamespacedSnapshotter
    from pycontainerd.transfer.registry import RegistrySession
    from pycontainerd.transfer.verify import BinDirVerifier

log = logging.getLogger(__name__)

T = TypeVar("T")
REF_SOURCE = "io.containerd.import.ref-source"
GC_EXPIRE = "containerd.io/gc.expire"
TRANSFER_LEASE_TTL = dt.timedelta(hours=24)
COPY_CHUNK = 1 << 20


@dataclass(slots=True)
class TransferConfig:
    """``[plugins."io.containerd.transfer.v1.local"]``."""

    max_concurrent_downloads: int = 3
    max_concurrent_uploaded_layers: int = 3
    default_snapshotter: str = "overlayfs"
    config_path: str = ""
    """Where ``hosts.toml`` files live (``<config_path>/<host>/hosts.toml``)."""
    fetch_referrers: bool = False
    """Also fetch the OCI 1.1 referrers (signatures, SBOMs) of every manifest pulled."""


class _ContentSink:
    """Blobs from a worker thread into a namespace's content store."""

    def __init__(self, bridge: LoopBridge, content: ContentStore, ctx: RequestContext) -> None:
        self._bridge = bridge
        self._content = content
        self._ctx = ctx

    def put(self, source: IO[bytes], size: int, digest: str | None) -> str:
        ref = f"transfer-{uuid.uuid4().hex}"
        try:
            writer = self._bridge.call(self._content.writer, self._ctx, ref, total=size, expected=digest or "")
        except AlreadyExists:
            assert digest is not None
            return digest  # held already; the tar reader skips the unread bytes
        try:
            remaining = size
            while remaining > 0:
                chunk = source.read(min(COPY_CHUNK, remaining))
                if not chunk:
                    raise FailedPrecondition(f"archive member ended {remaining} bytes early")
                writer.write(chunk)
                remaining -= len(chunk)
            try:
                return self._bridge.call(writer.commit, size, digest or "")
            except AlreadyExists:
                return digest or writer.digest()
        except BaseException:
            writer.close()
            with contextlib.suppress(NotFound):
                self._bridge.call(self._content.abort, self._ctx, ref)
            raise
        finally:
            writer.close()

    def size(self, digest: str) -> int:
        return self._bridge.call(self._content.info, self._ctx, digest).size

    def peek(self, digest: str, count: int) -> bytes:
        return self._bridge.call(self._content.read_at, self._ctx, digest, 0, count)


class _ContentSource:
    """Blobs for a worker thread out of a namespace's content store."""

    def __init__(self, bridge: LoopBridge, content: ContentStore, ctx: RequestContext) -> None:
        self._bridge = bridge
        self._content = content
        self._ctx = ctx

    def open(self, digest: str) -> IO[bytes]:
        self._bridge.call(self._content.info, self._ctx, digest)  # the namespace must hold it
        return open_blob(self._content.backend, digest)

    def size(self, digest: str) -> int:
        return self._bridge.call(self._content.info, self._ctx, digest).size


class _SyncWriter:
    """A blocking file object over an async byte stream, for a worker thread."""

    def __init__(self, bridge: LoopBridge, writer: ByteWriter) -> None:
        self._bridge = bridge
        self._writer = writer

    def write(self, data: bytes) -> int:
        self._bridge.wait(self._writer.write(bytes(data)))
        return len(data)

    def flush(self) -> None:
        pass


def _ref_name(annotations: dict[str, str], translate: Callable[[str], str] | None) -> str:
    """The name an imported manifest asks for, after the store's prefix rules ("" = none)."""
    name = annotations.get(IMAGE_NAME_ANNOTATION, "")
    if name:
        if translate is not None and translate(name) != name:
            return ""
        return name
    ref = annotations.get(REF_NAME_ANNOTATION, "")
    if ref and translate is not None:
        return translate(ref)
    return ""


def _prefix_translator(prefix: str, check_prefix: bool) -> Callable[[str], str]:
    """containerd's ``AddRefPrefix`` (check_prefix False) and ``FilterRefPrefix`` (True)."""

    def translate(ref: str) -> str:
        if not prefix:
            return ""
        if any(c in ref for c in "/:@"):
            if check_prefix and not (ref.startswith(prefix) and (len(ref) == len(prefix) or ref[len(prefix)] in "/:@")):
                return ""
            return ref
        return f"{prefix}:{ref}"

    return translate


class LocalTransfer:
    """Moves images between the client, this daemon's stores and registries."""

    def __init__(
        self,
        metadata: Metadata,
        config: TransferConfig | None = None,
        verifiers: Mapping[str, BinDirVerifier] | None = None,
        differs: OrderedDiffers | None = None,
    ) -> None:
        self._metadata = metadata
        self.differs = differs
        """The diff service's differs, which apply unpacked layers (None: in this process)."""
        self.config = config or TransferConfig()
        self.verifiers = dict(verifiers or {})
        self.limits = Limits(self.config.max_concurrent_downloads, self.config.max_concurrent_uploaded_layers)

    @property
    def snapshotters(self) -> dict[str, NamespacedSnapshotter]:
        """The loaded snapshotters, by name."""
        return self._metadata.snapshotters

    @property
    def _content(self) -> ContentStore:
        content = self._metadata.content
        if content is None:
            raise FailedPrecondition("no content store loaded")
        return content

    async def transfer(self, ctx: RequestContext, source: object, destination: object, progress: ProgressFn) -> None:
        """Run one transfer; Unimplemented for a pair this daemon cannot move."""
        match source, destination:
            case ImportStream(), ImageStoreTarget():
                await self.import_stream(ctx, source, destination, progress)
            case ImageStoreTarget(), ExportStream():
                await self.export_stream(ctx, source, destination, progress)
            case ImageStoreTarget(), ImageStoreTarget():
                await self.tag(ctx, source, destination)
            case ReadStream(), SnapshotTarget():
                from pycontainerd.transfer.layers import layer_to_snapshot

                # No temporary lease: the committed snapshot is the result and must outlive the call.
                await layer_to_snapshot(self, ctx, source, destination, progress)
            case SnapshotTarget(), WriteStream():
                from pycontainerd.transfer.layers import snapshot_to_layer

                await snapshot_to_layer(self, ctx, source, destination, progress)
            case Registry(), ImageStoreTarget():
                from pycontainerd.transfer.pull import pull

                session = self._registry(source)
                try:
                    async with self._lease(ctx) as leased:
                        await pull(self, leased, source, destination, progress, session)
                finally:
                    await session.close()
            case Registry(), Registry():
                await self.mirror(ctx, source, destination, progress)
            case ImageStoreTarget(), Registry():
                from pycontainerd.transfer.push import push

                session = self._registry(destination)
                try:
                    await push(self, ctx, source, destination, progress, session)
                finally:
                    await session.close()
            case _:
                raise Unimplemented(
                    f"transfer from {type(source).__name__} to {type(destination).__name__} is not implemented"
                )

    async def mirror(self, ctx: RequestContext, source: Registry, destination: Registry, progress: ProgressFn) -> None:
        """Copy an image from one registry to another, through the content store under a
        temporary lease (the blobs stay until the GC finds them unreferenced)."""
        from pycontainerd.transfer.pull import fetch_image
        from pycontainerd.transfer.push import push_image

        pulling, pushing = self._registry(source), self._registry(destination)
        try:
            async with self._lease(ctx) as leased:
                root = await fetch_image(self, leased, source, ImageStoreTarget(), progress, pulling)
                await push_image(self, leased, root, (), destination, progress, pushing)
        finally:
            await pulling.close()
            await pushing.close()

    def _registry(self, registry: Registry) -> RegistrySession:
        from pycontainerd.transfer.registry import RegistrySession

        return RegistrySession(registry, self.config.config_path, self.limits)

    @contextlib.asynccontextmanager
    async def _lease(self, ctx: RequestContext) -> AsyncIterator[RequestContext]:
        """The caller's lease, or a temporary one (expiring in 24 h) deleted afterwards."""
        if ctx.lease:
            yield ctx
            return
        lease_id = f"transfer-{uuid.uuid4().hex[:16]}"
        expire = (dt.datetime.now(dt.UTC) + TRANSFER_LEASE_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._metadata.leases.create(ctx, lease_id, {GC_EXPIRE: expire})
        try:
            yield RequestContext(ctx.namespace, lease_id, ctx.deadline)
        finally:
            with contextlib.suppress(NotFound):
                self._metadata.leases.delete(ctx, lease_id)
            self._metadata.mark_dirty()

    # -- reading images ------------------------------------------------------------------

    def read_json(self, ctx: RequestContext, desc: Descriptor) -> dict[str, Any]:
        """An index or manifest document from the content store; InvalidArgument unless it is a
        JSON object."""
        data = self._content.read_at(ctx, desc.digest, 0, -1)
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise InvalidArgument(f"{desc.media_type} {desc.digest} is not valid JSON") from exc
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{desc.media_type} {desc.digest} is not a JSON object")
        return doc

    def label_children(
        self, ctx: RequestContext, desc: Descriptor, keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        """Give every index and manifest its ``containerd.io/gc.ref.content.*`` labels, as
        containerd does when it fetches or imports, so the GC keeps what an image needs."""
        if desc.media_type not in INDEXES and desc.media_type not in MANIFESTS:
            return
        doc = self.read_json(ctx, desc)
        labels: dict[str, str] = {}
        if "config" in doc:
            config, *layers = children(doc)
            labels["containerd.io/gc.ref.content.config"] = config.digest
            for i, layer in enumerate(layers):
                labels[f"containerd.io/gc.ref.content.l.{i}"] = layer.digest
        else:
            for i, (child, child_desc) in enumerate(index_entries(doc)):
                labels[f"containerd.io/gc.ref.content.m.{i}"] = child_desc.digest
                if keep is not None and not keep(child):
                    continue
                try:
                    self.label_children(ctx, child_desc, keep)
                except NotFound:
                    log.debug("manifest %s not held; not labelled", child_desc.digest)
        if labels:
            self._content.update(ctx, desc.digest, labels, [f"labels.{k}" for k in labels])

    def store(self, ctx: RequestContext, target: ImageStoreTarget, desc: Descriptor) -> list[Image]:
        """Create or update the image records ``target`` asks for, pointing at ``desc``.

        NotFound when no name applies (containerd's rules for ``ImageStore``)."""
        wanted: list[Image] = []
        annotations = dict(desc.annotations)
        if REF_SOURCE in annotations:
            if annotations.pop(REF_SOURCE) != "annotation":
                raise Unimplemented("ref source not supported")
            plain = Descriptor(desc.media_type, desc.digest, desc.size, annotations)
            for ref in target.extra_references:
                if not ref.is_prefix:
                    continue
                name = _ref_name(annotations, _prefix_translator(ref.name, not ref.allow_overwrite))
                labels = self._extra_labels(target)
                if not name:
                    if ref.add_digest:
                        wanted.append(Image(f"{ref.name}@{desc.digest}", plain, labels))
                    continue
                wanted.append(Image(name, plain, labels))
                if ref.add_digest and not ref.skip_named_digest:
                    wanted.append(Image(f"{ref.name}@{desc.digest}", plain, labels))
        else:
            if target.name:
                wanted.append(Image(target.name, desc, dict(target.labels)))
            for ref in target.extra_references:
                if ref.is_prefix and not ref.add_digest:
                    continue
                name = f"{ref.name}@{desc.digest}" if ref.add_digest else ref.name
                wanted.append(Image(name, desc, self._extra_labels(target)))
        if not wanted:
            raise NotFound("no image name found")
        images = self._metadata.images
        stored = []
        for image in wanted:
            try:
                stored.append(images.create(ctx, image))
            except AlreadyExists:
                stored.append(images.update(ctx, image))
        return stored

    @staticmethod
    def _extra_labels(target: ImageStoreTarget) -> dict[str, str]:
        labels = dict(target.labels)
        if target.name:
            labels["containerd.io/gc.bref.image"] = target.name
            labels[GC_EXPIRE] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return labels

    # -- unpacking -----------------------------------------------------------------------

    async def unpack(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        wanted: Unpack,
        progress: ProgressFn,
        open_layer: LayerOpener | None = None,
        layer_ready: LayerReady | None = None,
    ) -> None:
        """Unpack the manifest of ``desc`` for ``wanted.platform`` into its snapshotter.

        Layers go through the diff service's differs; applied in this process, they are read
        from ``open_layer`` when given, else from the content store; a remote differ gets
        each one once ``layer_ready`` says it is committed."""
        name = wanted.snapshotter or self.config.default_snapshotter
        snapshotter = self._metadata.snapshotters.get(name)
        if snapshotter is None:
            raise NotFound(f"snapshotter {name!r} not loaded")

        def read(digest: str) -> bytes:
            return self._content.read_at(ctx, digest, 0, -1)

        try:
            found = manifests(read, desc, wanted.platform)
        except NotFound:
            log.info("no manifest for %s in %s: nothing to unpack", wanted.platform, desc.digest)
            return

        def on_layer(layer: Descriptor, event: str) -> None:
            if event != "exists":
                progress(Progress(event, ref_key(layer), (), layer.size, layer.size, layer))

        await unpack(
            ctx,
            self._content,
            snapshotter,
            found[0],
            on_layer,
            open_layer,
            differ=self.differs,
            layer_ready=layer_ready,
        )

    # -- the transfers -------------------------------------------------------------------

    async def import_stream(
        self, ctx: RequestContext, source: ImportStream, target: ImageStoreTarget, progress: ProgressFn
    ) -> None:
        """An archive from the client into the image store (and snapshots)."""
        async with self._lease(ctx) as leased:
            progress(Progress("Importing"))
            bridge = LoopBridge(asyncio.get_running_loop())
            reader = io.BufferedReader(BlockingReader(bridge, ByteReader(source.stream)), 1 << 20)
            sink = _ContentSink(bridge, self._content, leased)
            try:
                imported = await asyncio.to_thread(import_archive, reader, sink)
            finally:
                source.stream.close()

            def keep(child: dict[str, Any]) -> bool:
                return not target.platforms or any(matches(p, child.get("platform")) for p in target.platforms)

            self.label_children(leased, imported.index, keep)
            for wanted in target.unpacks:
                await self.unpack(leased, imported.index, wanted, progress)
            descriptors = [imported.index]
            for m in imported.document.get("manifests") or []:
                if not keep(m):
                    continue
                annotations = {**(m.get("annotations") or {}), REF_SOURCE: "annotation"}
                descriptors.append(Descriptor(m.get("mediaType", ""), m["digest"], int(m["size"]), annotations))
            for desc in descriptors:
                try:
                    stored = self.store(leased, target, desc)
                except NotFound:
                    continue
                for image in stored:
                    progress(Progress("saved", image.name, desc=desc))
            progress(Progress("Completed import"))

    async def export_stream(
        self, ctx: RequestContext, source: ImageStoreTarget, target: ExportStream, progress: ProgressFn
    ) -> None:
        """Images from the store to the client as an OCI archive."""
        progress(Progress("Exporting"))
        images = self._metadata.images
        found = []
        if source.name:
            found.append(images.get(ctx, source.name))
        for ref in source.extra_references:
            if ref.is_prefix:
                raise Unimplemented("prefix lookup on export not implemented")
            found.append(images.get(ctx, ref.name))
        if not found:
            raise NotFound("no image to export")
        platforms: tuple[Platform, ...] = () if target.all_platforms else target.platforms
        bridge = LoopBridge(asyncio.get_running_loop())
        writer = ByteWriter(target.stream)
        try:
            await asyncio.to_thread(
                export_archive,
                _SyncWriter(bridge, writer),  # type: ignore[arg-type]
                _ContentSource(bridge, self._content, ctx),
                [(image.name, image.target) for image in found],
                _platform_filter(platforms),
            )
        finally:
            await writer.aclose()
        progress(Progress("Completed export"))

    async def tag(self, ctx: RequestContext, source: ImageStoreTarget, target: ImageStoreTarget) -> None:
        """Give an image another name."""
        async with self._lease(ctx) as leased:
            image = self._metadata.images.get(leased, source.name)
            self.store(leased, target, image.target)


def _platform_filter(platforms: tuple[Platform, ...]) -> Callable[[dict[str, Any]], bool] | None:
    """Keeps an index entry whose ``platform`` fits one of ``platforms`` (all when empty)."""
    if not platforms:
        return None

    def keep(child: dict[str, Any]) -> bool:
        return any(matches(p, child.get("platform")) for p in platforms)

    return keep


__all__ = ["LocalTransfer", "Reference", "TransferConfig"]
