"""Serve a plain content store over gRPC, as a proxy plugin for pycontainerd or containerd.

``python -m pycontainerd.content.service --address SOCK --root DIR`` serves
``containerd.services.content.v1.Content`` on a unix socket for a local store rooted at DIR
(blobs under ``DIR/blobs/sha256``, ingests under ``DIR/ingest``). The store is namespace-less:
the daemon that uses it as a ``[proxy_plugins]`` entry of type ``content`` keeps namespaces,
labels, leases and garbage collection in its own metadata, as for its built-in store. Any
namespace header is ignored; ``Update`` is refused (the store keeps no labels), as containerd's
local store without a label store does.

The ``Write`` stream follows containerd's content server: the first message names the ref and
locks it for the stream; every message is answered with the ingest's offset (and digest);
``WRITE`` appends at the offset it gives (0 on a started ingest restarts it, any other offset
must be the current one: OutOfRange otherwise); ``COMMIT`` checks size and digest
(FailedPrecondition on a mismatch, the ingest staying resumable) and ends the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2

from pycontainerd import filters
from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.content.local.store import LocalStore
from pycontainerd.content.proxy import MAX_MESSAGE
from pycontainerd.core.content import Info, Status, parse_digest
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from pycontainerd.services._convert import timestamp
from pycontainerd.services._interceptor import ErrorInterceptor
from pycontainerd.services.content import info_to_pb, status_to_pb

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from pycontainerd.content.local.writer import Writer

log = logging.getLogger("pycontainerd.content.service")

READ_CHUNK = 1 << 20
LIST_BATCH = 100


def _info_adaptor(info: Info) -> filters.Adaptor:
    def value(path: Sequence[str]) -> str | None:
        if list(path) == ["digest"]:
            return info.digest
        if list(path) == ["size"]:
            return str(info.size)
        if path and path[0] == "labels":
            return filters.label_adaptor(info.labels, path)
        return None

    return value


def _status_adaptor(status: Status) -> filters.Adaptor:
    return lambda path: status.ref if list(path) == ["ref"] else None


class ContentServer(pb_grpc.ContentServicer):
    """The Content API over one plain :class:`LocalStore`."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store

    async def Info(self, request: pb.InfoRequest, context: Any) -> pb.InfoResponse:
        return pb.InfoResponse(info=info_to_pb(self._store.info(parse_digest(request.digest))))

    async def Update(self, request: pb.UpdateRequest, context: Any) -> pb.UpdateResponse:
        parse_digest(request.info.digest)
        raise FailedPrecondition("update not supported on immutable content store")

    async def List(self, request: pb.ListContentRequest, context: Any) -> AsyncIterator[pb.ListContentResponse]:
        parsed = filters.parse_all(request.filters)
        infos = await asyncio.to_thread(lambda: list(self._store.walk()))
        infos = [i for i in infos if filters.match_any(parsed, _info_adaptor(i))]
        for start in range(0, len(infos), LIST_BATCH):
            yield pb.ListContentResponse(info=[info_to_pb(i) for i in infos[start : start + LIST_BATCH]])

    async def Delete(self, request: pb.DeleteContentRequest, context: Any) -> empty_pb2.Empty:
        self._store.delete(parse_digest(request.digest))
        log.info("deleted %s", request.digest)
        return empty_pb2.Empty()

    async def Read(self, request: pb.ReadContentRequest, context: Any) -> AsyncIterator[pb.ReadContentResponse]:
        digest = parse_digest(request.digest)
        size = self._store.info(digest).size
        offset = max(request.offset, 0)
        if offset > size:
            raise OutOfRange(f"read past object length {size} bytes")
        end = size if request.size <= 0 or offset + request.size > size else offset + request.size
        while offset < end:
            data = await asyncio.to_thread(self._store.read_at, digest, offset, min(READ_CHUNK, end - offset))
            if not data:
                break
            yield pb.ReadContentResponse(offset=offset, data=data)
            offset += len(data)

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        return pb.StatusResponse(status=status_to_pb(self._store.status(request.ref)))

    async def ListStatuses(self, request: pb.ListStatusesRequest, context: Any) -> pb.ListStatusesResponse:
        parsed = filters.parse_all(request.filters)
        statuses = [s for s in self._store.list_statuses() if filters.match_any(parsed, _status_adaptor(s))]
        return pb.ListStatusesResponse(statuses=[status_to_pb(s) for s in statuses])

    async def Abort(self, request: pb.AbortRequest, context: Any) -> empty_pb2.Empty:
        self._store.abort(request.ref)
        return empty_pb2.Empty()

    async def Write(
        self, request_iterator: AsyncIterator[pb.WriteContentRequest], context: Any
    ) -> AsyncIterator[pb.WriteContentResponse]:
        requests = aiter(request_iterator)
        try:
            req = await anext(requests)
        except StopAsyncIteration:
            return
        if not req.ref:
            raise InvalidArgument("first message must have a reference")
        ref, total, expected = req.ref, req.total, req.expected
        if expected:
            parse_digest(expected)
        writer = await asyncio.to_thread(self._store.writer, ref, total=total, expected=expected)
        try:
            while True:
                if req.expected:
                    expected = parse_digest(req.expected)
                    if self._holds(expected):
                        writer.close()
                        with contextlib.suppress(NotFound):
                            self._store.abort(ref)
                        raise AlreadyExists(f"blob with expected digest {expected} exists")
                if req.total > 0:
                    total = req.total
                yield await self._handle(writer, req, total, expected)
                if req.action == pb.COMMIT:
                    log.info("committed %s (%s)", writer.digest(), ref)
                    return
                try:
                    req = await anext(requests)
                except StopAsyncIteration:
                    return
        finally:
            writer.close()

    def _holds(self, digest: str) -> bool:
        try:
            self._store.info(digest)
        except NotFound:
            return False
        return True

    async def _handle(
        self, writer: Writer, req: pb.WriteContentRequest, total: int, expected: str
    ) -> pb.WriteContentResponse:
        status = writer.status()
        reply = pb.WriteContentResponse(action=req.action, offset=status.offset)
        if req.action == pb.STAT:
            reply.digest = writer.digest()
            reply.started_at.CopyFrom(timestamp(status.started_at))
            reply.updated_at.CopyFrom(timestamp(status.updated_at))
            # The session's total, else the one the ingest recorded (containerd sends only the former).
            reply.total = total or status.total
            return reply
        if req.action not in (pb.WRITE, pb.COMMIT):
            raise InvalidArgument(f"unknown write action {req.action}")
        if req.offset > 0 and req.offset != status.offset:
            raise OutOfRange(f"write @{req.offset} must occur at current offset {status.offset}")
        if req.offset == 0 and status.offset > 0:
            writer.truncate(0)
            reply.offset = 0
        if req.data:
            await asyncio.to_thread(writer.write, req.data)
            reply.offset += len(req.data)
        if req.action == pb.COMMIT:
            await asyncio.to_thread(writer.commit, total, expected)
        reply.digest = writer.digest()
        return reply


async def serve(store: LocalStore, address: str, ready: asyncio.Event | None = None) -> None:
    """Serve ``store`` on the unix socket ``address`` until SIGTERM or SIGINT."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
    )
    pb_grpc.add_ContentServicer_to_server(ContentServer(store), server)
    server.add_insecure_port(f"unix:{address}")
    await server.start()
    log.info("serving content from %s on %s", store.root, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await server.stop(1)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)


def main(argv: list[str] | None = None) -> int:
    """Run a content store as a gRPC proxy plugin."""
    parser = argparse.ArgumentParser(prog="python -m pycontainerd.content.service", description=__doc__)
    parser.add_argument("--address", required=True, help="unix socket to serve on")
    parser.add_argument("--root", required=True, help="directory of the blobs and ingests")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    asyncio.run(serve(LocalStore(root), args.address))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
