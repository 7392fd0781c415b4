"""``containerd.services.content.v1.Content``: blobs by digest and resumable ingests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.core.content import Info, Status, parse_digest
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, OutOfRange
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import mask_paths, timestamp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from pycontainerd.metadata.content import ContentStore, NamespacedWriter
    from pycontainerd.metadata.plugin import Metadata

READ_CHUNK = 1 << 20
LIST_BATCH = 2000


def info_to_pb(info: Info) -> pb.Info:
    """Core blob info to protobuf."""
    return pb.Info(
        digest=info.digest,
        size=info.size,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


def status_to_pb(status: Status) -> pb.Status:
    """Core ingest status to protobuf."""
    return pb.Status(
        ref=status.ref,
        offset=status.offset,
        total=status.total,
        expected=status.expected,
        started_at=timestamp(status.started_at),
        updated_at=timestamp(status.updated_at),
    )


class ContentService(pb_grpc.ContentServicer):
    """The Content API over the namespaced content store."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self._list_cache: dict[tuple[str, tuple[str, ...]], tuple[int, list[pb.ListContentResponse]]] = {}

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_ContentServicer_to_server(self, server)

    async def Info(self, request: pb.InfoRequest, context: Any) -> pb.InfoResponse:
        ctx = request_context(context)
        return pb.InfoResponse(info=info_to_pb(self._store.info(ctx, parse_digest(request.digest))))

    async def Update(self, request: pb.UpdateRequest, context: Any) -> pb.UpdateResponse:
        ctx = request_context(context)
        paths = mask_paths(request.HasField("update_mask"), request.update_mask)
        info = self._store.update(ctx, parse_digest(request.info.digest), dict(request.info.labels), paths)
        return pb.UpdateResponse(info=info_to_pb(info))

    async def List(self, request: pb.ListContentRequest, context: Any) -> AsyncIterator[pb.ListContentResponse]:
        ctx = request_context(context)
        key = (ctx.namespace, tuple(request.filters))
        cached = self._list_cache.get(key)
        if cached is not None and cached[0] == self._store.generation:
            for reply in cached[1]:
                yield reply
            return
        generation = self._store.generation
        replies = self._list_replies(ctx, list(request.filters))
        # Listings are read far more often than content changes: keep the built replies until
        # the next metadata write (a handful of namespaces/filters at most).
        if len(self._list_cache) > 64:
            self._list_cache.clear()
        self._list_cache[key] = (generation, replies)
        for reply in replies:
            yield reply

    def _list_replies(self, ctx: Any, filter_texts: list[str]) -> list[pb.ListContentResponse]:
        infos = self._store.list(ctx, filter_texts)
        replies = []
        for start in range(0, len(infos), LIST_BATCH):
            reply = pb.ListContentResponse()
            for info in infos[start : start + LIST_BATCH]:
                # add() + field assignment: ~30% cheaper than building each Info with keyword arguments.
                item = reply.info.add(digest=info.digest, size=info.size)
                item.created_at.seconds, item.created_at.nanos = divmod(info.created_at, 1_000_000_000)
                item.updated_at.seconds, item.updated_at.nanos = divmod(info.updated_at, 1_000_000_000)
                item.labels.update(info.labels)
            replies.append(reply)
        return replies

    async def Delete(self, request: pb.DeleteContentRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        self._store.delete(ctx, parse_digest(request.digest))
        return empty_pb2.Empty()

    async def Read(self, request: pb.ReadContentRequest, context: Any) -> AsyncIterator[pb.ReadContentResponse]:
        ctx = request_context(context)
        digest = parse_digest(request.digest)
        info = self._store.info(ctx, digest)
        if request.offset < 0 or request.offset > info.size:
            raise OutOfRange(f"read offset {request.offset} beyond size {info.size}")
        end = info.size if request.size <= 0 else min(info.size, request.offset + request.size)
        offset = request.offset
        while offset < end:
            data = self._store.backend.read_at(digest, offset, min(READ_CHUNK, end - offset))
            if not data:
                break
            yield pb.ReadContentResponse(offset=offset, data=data)
            offset += len(data)

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        ctx = request_context(context)
        return pb.StatusResponse(status=status_to_pb(self._store.status(ctx, request.ref)))

    async def ListStatuses(self, request: pb.ListStatusesRequest, context: Any) -> pb.ListStatusesResponse:
        ctx = request_context(context)
        statuses = self._store.list_statuses(ctx, list(request.filters))
        return pb.ListStatusesResponse(statuses=[status_to_pb(s) for s in statuses])

    async def Abort(self, request: pb.AbortRequest, context: Any) -> empty_pb2.Empty:
        ctx = request_context(context)
        self._store.abort(ctx, request.ref)
        return empty_pb2.Empty()

    async def Write(
        self, request_iterator: AsyncIterator[pb.WriteContentRequest], context: Any
    ) -> AsyncIterator[pb.WriteContentResponse]:
        """The write session: the first message names the ref; the writer is locked until the end.

        Each request is answered with the writer's state; WRITE appends (offset, when given,
        must equal the current one; offset 0 on a started ingest restarts it); COMMIT verifies
        size and digest and ends the session.
        """
        ctx = request_context(context)
        requests = aiter(request_iterator)
        try:
            req = await anext(requests)
        except StopAsyncIteration:
            return
        if not req.ref:
            raise InvalidArgument("first message must have a reference")
        total, expected = req.total, req.expected
        if expected:
            parse_digest(expected)
        writer = self._store.writer(ctx, req.ref, total=total, expected=expected)
        try:
            while True:
                if req.expected:
                    expected = parse_digest(req.expected)
                    if self._holds(ctx, expected):
                        writer.close()
                        self._store.abort(ctx, req.ref)
                        raise AlreadyExists(f"blob with expected digest {req.expected} exists")
                if req.total > 0:
                    total = req.total
                reply = self._handle(writer, req, total, expected)
                yield reply
                if req.action == pb.COMMIT:
                    return
                try:
                    req = await anext(requests)
                except StopAsyncIteration:
                    return
        finally:
            writer.close()

    def _holds(self, ctx: Any, digest: str) -> bool:
        try:
            self._store.info(ctx, digest)
        except Exception:
            return False
        return True

    def _handle(
        self, writer: NamespacedWriter, req: pb.WriteContentRequest, total: int, expected: str
    ) -> pb.WriteContentResponse:
        status = writer.status()
        reply = pb.WriteContentResponse(action=req.action, offset=status.offset)
        if req.action == pb.STAT:
            reply.digest = writer.digest()
            reply.started_at.CopyFrom(timestamp(status.started_at))
            reply.updated_at.CopyFrom(timestamp(status.updated_at))
            reply.total = total
            return reply
        if req.action not in (pb.WRITE, pb.COMMIT):
            raise InvalidArgument(f"unknown write action {req.action}")
        if req.offset > 0 and req.offset != status.offset:
            raise OutOfRange(f"write @{req.offset} must occur at current offset {status.offset}")
        if req.offset == 0 and status.offset > 0:
            writer.truncate(0)
            reply.offset = 0
        if req.data:
            writer.write(req.data)
            reply.offset += len(req.data)
        if req.action == pb.COMMIT:
            writer.commit(total, expected, dict(req.labels))
        reply.digest = writer.digest()
        return reply


def _init(ctx: InitContext) -> ContentService:
    metadata: Metadata = ctx.plugins.first(types.METADATA)
    if metadata.content is None:
        raise RuntimeError("no content store loaded")
    return ContentService(metadata.content)


REGISTRATION = Registration(type=types.GRPC, id="content", init=_init, requires=(types.METADATA,))
