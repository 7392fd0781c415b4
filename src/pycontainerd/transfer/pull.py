"""Pull: registry -> content store -> snapshots, reading each blob from the network once.

1. The reference is resolved and every configured verifier is asked; a refusal stops the pull
   before any content moves.
2. The index (if any), the manifests of the wanted platforms and their configs are fetched.
3. All layers download at once (at most ``max_concurrent_downloads`` at a time) while, for
   each unpack platform, the layers are applied in order into a chain of snapshots: a layer
   whose turn comes while it is still downloading is read from its ingest file as it grows
   (:mod:`pycontainerd.transfer.follow`), so extraction runs alongside the download.
4. Indexes and manifests get their ``gc.ref`` labels, every blob a
   ``containerd.io/distribution.source.<host>`` label (push uses it to mount across
   repositories), and the image record is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import IO, TYPE_CHECKING, Any

from pycontainerd.content.reader import open_blob
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, NotFound, Unavailable, Unknown
from pycontainerd.images.manifest import DOCKER_SCHEMA1, MANIFESTS, index_entries, manifest_entries
from pycontainerd.images.platforms import matches
from pycontainerd.remotes.pusher import distribution_source_key
from pycontainerd.transfer.follow import Download, FollowReader
from pycontainerd.transfer.objects import Progress, ref_key
from pycontainerd.transfer.referrers import fetch_referrers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pycontainerd.core.images import Descriptor
    from pycontainerd.metadata.content import ContentStore, NamespacedWriter
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.transfer.local import LocalTransfer
    from pycontainerd.transfer.objects import ImageStoreTarget, ProgressFn, Registry
    from pycontainerd.transfer.registry import RegistrySession

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.2
REFERRER_LABEL = "containerd.io/gc.ref.content.referrer.sha256."


class _CountingWriter:
    """The content writer a fetch appends to, reporting each append to the shared Download."""

    def __init__(self, inner: NamespacedWriter, download: Download, report: Callable[[int], None]) -> None:
        self._inner = inner
        self._download = download
        self._report = report

    @property
    def offset(self) -> int:
        return self._inner.offset

    def digest(self) -> str:
        return self._inner.digest()

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._download.advance(len(data))
        self._report(self._inner.offset)

    def truncate(self, size: int) -> None:
        # A resumed ingest whose old bytes were wrong starts over; a reader following it may
        # have consumed them, so it fails (and the pull with it) rather than apply bad bytes.
        self._download.finish(Unavailable(f"download of {self._download.desc.digest} restarted; pull again"))
        self._inner.truncate(size)

    def commit(self, size: int, expected: str, commit_labels: Mapping[str, str] | None = None) -> str:
        return self._inner.commit(size, expected, commit_labels)


class Puller:
    """One pull in progress."""

    def __init__(
        self,
        engine: LocalTransfer,
        ctx: RequestContext,
        session: RegistrySession,
        progress: ProgressFn,
    ) -> None:
        self.engine = engine
        self.ctx = ctx
        self.session = session
        self.progress = progress
        self.downloads: dict[str, Download] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.fetched: list[Descriptor] = []

    @property
    def content(self) -> ContentStore:
        content = self.engine._metadata.content
        assert content is not None
        return content

    def start(self, desc: Descriptor) -> asyncio.Task[None]:
        """Start (once) fetching ``desc`` into the content store."""
        if desc.digest not in self.tasks:
            self.downloads[desc.digest] = Download(desc)
            self.fetched.append(desc)
            self.progress(Progress("waiting", ref_key(desc), (), 0, desc.size, desc))
            from pycontainerd.aio import spawn

            self.tasks[desc.digest] = spawn(self._fetch(desc))
        return self.tasks[desc.digest]

    async def fetch(self, desc: Descriptor) -> None:
        await self.start(desc)

    async def _fetch(self, desc: Descriptor) -> None:
        download = self.downloads[desc.digest]
        name = ref_key(desc)
        try:
            try:
                writer = self.content.writer(self.ctx, name, total=desc.size, expected=desc.digest)
            except AlreadyExists:  # the namespace holds it already
                download.started(None, desc.size)
                download.finish()
                self.progress(Progress("already exists", name, (), desc.size, desc.size, desc))
                return
            try:
                download.started(writer.data_path, writer.offset)
                last = [0.0]

                def report(offset: int) -> None:
                    now = time.monotonic()
                    if now - last[0] >= PROGRESS_INTERVAL:
                        last[0] = now
                        self.progress(Progress("downloading", name, (), offset, desc.size, desc))

                # The registry client's limits bound how many downloads run at once.
                await self.session.fetch_into(desc, _CountingWriter(writer, download, report))
            finally:
                writer.close()
            download.finish()
            self.progress(Progress("complete", name, (), desc.size, desc.size, desc))
        except BaseException as exc:
            download.finish(exc if isinstance(exc, Exception) else Unknown(f"fetch of {desc.digest} cancelled"))
            raise

    def open_layer(self, layer: Descriptor) -> IO[bytes]:
        """The layer's bytes as they arrive (runs in the extraction thread).

        A backend without files (a content proxy) cannot be read before the commit: then the
        layer is read from the store once its download is committed.
        """
        backend = self.content.backend
        path = getattr(backend, "path", None)
        download = self.downloads[layer.digest]
        if path is None:
            download.wait(lambda: download.done)
            if download.error is not None:
                raise download.error
            return open_blob(backend, layer.digest)
        return io.BufferedReader(FollowReader(download, lambda: path(layer.digest)), 1 << 20)

    async def layer_ready(self, layer: Descriptor) -> None:
        """Return once ``layer`` is committed to the content store (fails as its download did)."""
        await self.start(layer)


async def pull(
    engine: LocalTransfer,
    ctx: RequestContext,
    source: Registry,
    target: ImageStoreTarget,
    progress: ProgressFn,
    session: RegistrySession,
) -> None:
    """Pull ``source.reference`` into the image store (and snapshots) as ``target`` asks."""
    root = await fetch_image(engine, ctx, source, target, progress, session)
    for image in engine.store(ctx, target, root):
        progress(Progress("saved", image.name, desc=root))
    progress(Progress(f"Completed pull from {source.reference}"))


async def fetch_image(
    engine: LocalTransfer,
    ctx: RequestContext,
    source: Registry,
    target: ImageStoreTarget,
    progress: ProgressFn,
    session: RegistrySession,
) -> Descriptor:
    """Everything of a pull but the image record: returns the root descriptor, its content
    fetched for ``target.platforms`` (all when empty), labelled, and unpacked as asked."""
    name, root = await session.resolve(source.reference)
    if root.media_type in DOCKER_SCHEMA1:
        raise InvalidArgument("schema 1 image manifests are no longer supported")
    for verifier_name, verifier in engine.verifiers.items():
        judgement = await verifier.verify(name, root)
        if not judgement.ok:
            raise Unknown(
                f"image verifier {verifier_name} blocked pull of {name} with digest {root.digest} "
                f"for reason: {judgement.reason}"
            )
        log.debug("image verifier %s allowed pull of %s: %s", verifier_name, name, judgement.reason)
    progress(Progress(f"Pulling from {source.reference}"))
    progress(Progress("fetching image content", name, desc=root))
    puller = Puller(engine, ctx, session, progress)
    unpacks: list[asyncio.Future[None]] = []
    try:
        await puller.fetch(root)
        found_manifests = await _fetch_metadata(puller, root, target)
        for found in found_manifests:
            for layer in found["layers"]:
                puller.start(layer)
        if engine.config.fetch_referrers:
            subjects = [root] + [f["manifest"] for f in found_manifests if f["manifest"].digest != root.digest]
            await _fetch_referrers(puller, session, subjects)
        unpacks.extend(
            asyncio.ensure_future(engine.unpack(ctx, root, u, progress, puller.open_layer, puller.layer_ready))
            for u in target.unpacks
        )
        await asyncio.gather(*puller.tasks.values(), *unpacks)
    except BaseException:
        # gather leaves the others running when one fails: stop them all, and wait for their
        # clean-up (an unpack removes its half-extracted snapshot) before the caller hears.
        others: list[asyncio.Future[Any]] = [*puller.tasks.values(), *unpacks]
        for task in others:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*others, return_exceptions=True)
        raise

    def keep(child: dict[str, Any]) -> bool:
        return not target.platforms or any(matches(p, child.get("platform")) for p in target.platforms)

    engine.label_children(ctx, root, keep)
    _label_sources(puller, session.host, session.repository)
    return root


async def _fetch_metadata(puller: Puller, root: Descriptor, target: ImageStoreTarget) -> list[dict[str, Any]]:
    """Fetch the manifests of the wanted platforms and their configs; returns
    ``{"manifest": desc, "layers": [...]}`` per manifest."""
    found: list[dict[str, Any]] = []
    pending = [(root, 0)]
    while pending:
        desc, depth = pending.pop(0)
        if depth > 8:
            raise InvalidArgument("image index nesting too deep")
        doc = puller.engine.read_json(puller.ctx, desc)
        if "manifests" in doc and desc.media_type not in MANIFESTS:
            children = []
            for child, child_desc in index_entries(doc):
                if target.platforms and not any(matches(p, child.get("platform")) for p in target.platforms):
                    continue
                children.append(puller.start(child_desc))
                pending.append((child_desc, depth + 1))
            await asyncio.gather(*children)
            continue
        if "config" not in doc:
            raise InvalidArgument(f"{desc.digest} is neither an image index nor a manifest")
        config, layers = manifest_entries(doc)
        assert config is not None
        await puller.fetch(config)
        found.append({"manifest": desc, "layers": layers})
    return found


async def _fetch_referrers(puller: Puller, session: RegistrySession, subjects: list[Descriptor]) -> None:
    """Fetch each subject's referrers (and their blobs) and label the subject to keep them."""
    for subject in subjects:
        referrers = await fetch_referrers(session.client, session.reference, subject.digest)
        if not referrers:
            continue
        await asyncio.gather(*(puller.start(r) for r in referrers))
        for referrer in referrers:
            doc = puller.engine.read_json(puller.ctx, referrer)
            config, layers = manifest_entries(doc, config_required=False)
            for blob in [config, *layers] if config is not None else layers:
                if blob.size > 0:
                    puller.start(blob)
            puller.engine.label_children(puller.ctx, referrer)  # the GC keeps its blobs with it
        labels = {f"{REFERRER_LABEL}{i}": r.digest for i, r in enumerate(referrers)}
        puller.content.update(puller.ctx, subject.digest, labels, [f"labels.{k}" for k in labels])
        puller.progress(Progress("referrers", ref_key(subject), (), len(referrers), len(referrers), subject))


def _label_sources(puller: Puller, host: str, repository: str) -> None:
    """``containerd.io/distribution.source.<host>=<repositories>`` on every fetched blob."""
    key = distribution_source_key(host)
    for desc in puller.fetched:
        try:
            info = puller.content.info(puller.ctx, desc.digest)
        except NotFound:
            continue
        sources = set(filter(None, info.labels.get(key, "").split(",")))
        if repository in sources:
            continue
        sources.add(repository)
        puller.content.update(puller.ctx, desc.digest, {key: ",".join(sorted(sources))}, [f"labels.{key}"])
