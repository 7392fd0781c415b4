"""``containerd.services.transfer.v1.Transfer``: decode the source and destination, run it.

The Any messages become the plain objects of :mod:`pycontainerd.transfer.objects` (stream
names resolved against the stream manager); progress goes back on the client's progress
stream as ``containerd.types.transfer.Progress`` messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2 as pb
from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.api.containerd.types.transfer import imagestore_pb2, importexport_pb2, progress_pb2, registry_pb2
from pycontainerd.api.containerd.types.transfer import streaming_pb2 as tstreaming_pb2
from pycontainerd.api.pycontainerd.types.transfer.v1 import snapshot_pb2
from pycontainerd.diff.plugin import DIFF_SERVICE_ID
from pycontainerd.errdefs import InvalidArgument, NotFound, Unimplemented
from pycontainerd.images.platforms import Platform, normalize_arch
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.streaming.manager import EndOfStream
from pycontainerd.transfer.local import LocalTransfer, TransferConfig
from pycontainerd.transfer.objects import (
    ExportStream,
    ImageStoreTarget,
    ImportStream,
    Progress,
    ReadStream,
    Reference,
    Registry,
    SnapshotTarget,
    Unpack,
    WriteStream,
)
from pycontainerd.transfer.verify import BinDirVerifier, VerifierConfig
from pycontainerd.typeurl import name_of, pack

if TYPE_CHECKING:
    import grpc
    from google.protobuf import any_pb2

    from pycontainerd.api.containerd.types import platform_pb2
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.streaming.manager import StreamManager

log = logging.getLogger(__name__)


def platform_from_pb(p: platform_pb2.Platform) -> Platform:
    """Protobuf platform to core (architecture names normalised as containerd does)."""
    arch, variant = normalize_arch(p.architecture, p.variant)
    return Platform(p.os, arch, variant)


def progress_to_pb(p: Progress) -> progress_pb2.Progress:
    """Core progress report to protobuf."""
    message = progress_pb2.Progress(
        event=p.event, name=p.name, parents=list(p.parents), progress=p.progress, total=p.total
    )
    if p.desc is not None:
        message.desc.CopyFrom(
            descriptor_pb2.Descriptor(
                media_type=p.desc.media_type, digest=p.desc.digest, size=p.desc.size, annotations=p.desc.annotations
            )
        )
    return message


class TransferService(pb_grpc.TransferServicer):
    """Runs transfers through the local transferrer."""

    def __init__(self, transferrer: LocalTransfer, streams: StreamManager) -> None:
        self._transferrer = transferrer
        self._streams = streams

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_TransferServicer_to_server(self, server)

    def _decode(self, ctx: RequestContext, value: any_pb2.Any) -> object:
        kind = name_of(value)
        if kind == imagestore_pb2.ImageStore.DESCRIPTOR.full_name:
            s = imagestore_pb2.ImageStore.FromString(value.value)
            return ImageStoreTarget(
                name=s.name,
                labels=dict(s.labels),
                platforms=tuple(platform_from_pb(p) for p in s.platforms),
                all_metadata=s.all_metadata,
                manifest_limit=s.manifest_limit,
                extra_references=tuple(
                    Reference(r.name, r.is_prefix, r.allow_overwrite, r.add_digest, r.skip_named_digest)
                    for r in s.extra_references
                ),
                unpacks=tuple(Unpack(platform_from_pb(u.platform), u.snapshotter) for u in s.unpacks),
            )
        if kind == importexport_pb2.ImageImportStream.DESCRIPTOR.full_name:
            i = importexport_pb2.ImageImportStream.FromString(value.value)
            return ImportStream(self._streams.get(ctx.namespace, i.stream), i.media_type, i.force_compress)
        if kind == importexport_pb2.ImageExportStream.DESCRIPTOR.full_name:
            e = importexport_pb2.ImageExportStream.FromString(value.value)
            return ExportStream(
                self._streams.get(ctx.namespace, e.stream),
                e.media_type,
                tuple(platform_from_pb(p) for p in e.platforms),
                e.all_platforms,
                e.skip_compatibility_manifest,
                e.skip_non_distributable,
            )
        if kind == registry_pb2.OCIRegistry.DESCRIPTOR.full_name:
            r = registry_pb2.OCIRegistry.FromString(value.value)
            resolver = r.resolver
            auth = self._streams.get(ctx.namespace, resolver.auth_stream) if resolver.auth_stream else None
            return Registry(r.reference, resolver.host_dir, resolver.default_scheme, dict(resolver.headers), auth)
        if kind == tstreaming_pb2.ReadStream.DESCRIPTOR.full_name:
            rs = tstreaming_pb2.ReadStream.FromString(value.value)
            return ReadStream(self._streams.get(ctx.namespace, rs.stream), rs.media_type)
        if kind == tstreaming_pb2.WriteStream.DESCRIPTOR.full_name:
            ws = tstreaming_pb2.WriteStream.FromString(value.value)
            return WriteStream(self._streams.get(ctx.namespace, ws.stream), ws.media_type)
        if kind == snapshot_pb2.Snapshot.DESCRIPTOR.full_name:
            sn = snapshot_pb2.Snapshot.FromString(value.value)
            return SnapshotTarget(sn.key, sn.snapshotter, sn.parent, dict(sn.labels))
        if not kind:
            raise InvalidArgument("transfer source and destination are required")
        raise Unimplemented(f"transfer type {kind} is not supported")

    async def Transfer(self, request: pb.TransferRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        progress_stream = None
        if request.options.progress_stream:
            progress_stream = self._streams.get(ctx.namespace, request.options.progress_stream)
        source = self._decode(ctx, request.source)
        destination = self._decode(ctx, request.destination)
        queue: asyncio.Queue[Progress | None] = asyncio.Queue()

        async def send_progress() -> None:
            assert progress_stream is not None
            while (p := await queue.get()) is not None:
                try:
                    await progress_stream.send(pack(progress_to_pb(p)))
                except EndOfStream:
                    return  # the client stopped listening; the transfer goes on

        sender = spawn(send_progress()) if progress_stream is not None else None
        try:
            await self._transferrer.transfer(ctx, source, destination, queue.put_nowait)
        finally:
            if sender is not None and progress_stream is not None:
                queue.put_nowait(None)
                await sender
                progress_stream.close()
        return empty_pb2.Empty()


def _init_local(ctx: InitContext) -> LocalTransfer:
    config = ctx.config if isinstance(ctx.config, TransferConfig) else TransferConfig()
    verifiers = ctx.plugins.get_all(types.IMAGE_VERIFIER)
    try:
        differs = ctx.plugins.get(types.SERVICE, DIFF_SERVICE_ID)
    except NotFound:
        # Disabled or failed (see its error in `ctr plugins ls -d`): unpack applies layers in this process.
        log.warning("no diff service loaded: unpacks use the built-in differ")
        differs = None
    return LocalTransfer(ctx.plugins.first(types.METADATA), config, verifiers, differs)


def _init_verifier(ctx: InitContext) -> BinDirVerifier:
    return BinDirVerifier(ctx.config if isinstance(ctx.config, VerifierConfig) else VerifierConfig())


VERIFIER_REGISTRATION = Registration(type=types.IMAGE_VERIFIER, id="bindir", init=_init_verifier, config=VerifierConfig)


def _init(ctx: InitContext) -> TransferService:
    return TransferService(ctx.plugins.first(types.TRANSFER), ctx.plugins.first(types.STREAMING))


LOCAL_REGISTRATION = Registration(
    type=types.TRANSFER,
    id="local",
    init=_init_local,
    requires=(types.METADATA, types.IMAGE_VERIFIER, types.SERVICE),
    config=TransferConfig,
)
REGISTRATION = Registration(type=types.GRPC, id="transfer", init=_init, requires=(types.TRANSFER, types.STREAMING))
