"""The content store (``containerd.services.content.v1``): blobs by digest, ingests by ref."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.client._convert import content_info_from_pb, content_info_to_pb, content_status_from_pb, mask
from pycontainerd.client.connection import translate

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.content import Info, Status

CHUNK = 1 << 20
"""Bytes per Write message (well under the 16 MiB message limit)."""


class Content:
    """The content store of the connection's namespace."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.ContentStub(conn.channel())

    async def info(self, digest: str) -> Info:
        """One blob's size and labels; NotFound when the namespace does not hold it."""
        return content_info_from_pb((await self._conn.call(self._stub.Info, pb.InfoRequest(digest=digest))).info)

    async def list(self, filters: Sequence[str] = ()) -> list[Info]:
        """Blobs matching any of ``filters``."""
        out: list[Info] = []
        async for reply in self._conn.call_stream(self._stub.List, pb.ListContentRequest(filters=list(filters))):
            out.extend(content_info_from_pb(i) for i in reply.info)
        return out

    async def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change a blob's labels (``labels`` or ``labels.KEY`` in ``fieldpaths``)."""
        request = pb.UpdateRequest(info=content_info_to_pb(info), update_mask=mask(fieldpaths))
        return content_info_from_pb((await self._conn.call(self._stub.Update, request)).info)

    async def delete(self, digest: str) -> None:
        """Remove a blob from the namespace."""
        await self._conn.call(self._stub.Delete, pb.DeleteContentRequest(digest=digest))

    async def read_chunks(self, digest: str, offset: int = 0, size: int = 0) -> AsyncIterator[bytes]:
        """A blob's bytes in chunks as they arrive (``size`` 0: to the end)."""
        request = pb.ReadContentRequest(digest=digest, offset=offset, size=size)
        async for reply in self._conn.call_stream(self._stub.Read, request):
            yield reply.data

    async def read(self, digest: str) -> bytes:
        """A whole blob (for manifests and configs; stream big blobs with :meth:`read_chunks`)."""
        return b"".join([chunk async for chunk in self.read_chunks(digest)])

    async def statuses(self, filters: Sequence[str] = ()) -> builtins.list[Status]:
        """Ingests in progress."""
        reply = await self._conn.call(self._stub.ListStatuses, pb.ListStatusesRequest(filters=list(filters)))
        return [content_status_from_pb(s) for s in reply.statuses]

    async def abort(self, ref: str) -> None:
        """Drop an ingest in progress."""
        await self._conn.call(self._stub.Abort, pb.AbortRequest(ref=ref))

    async def write(
        self,
        ref: str,
        data: AsyncIterable[bytes],
        *,
        expected: str = "",
        total: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Ingest ``data`` under ``ref`` and commit it; returns the digest.

        ``expected``/``total``: the daemon refuses to commit other bytes (FailedPrecondition);
        an unfinished ingest of the same ref resumes where it stopped (the bytes it already
        holds are skipped). AlreadyExists when the namespace already holds ``expected``."""
        call = self._stub.Write(metadata=self._conn.metadata)

        async def send(request: pb.WriteContentRequest) -> pb.WriteContentResponse:
            await call.write(request)
            reply = await call.read()
            if reply is grpc.aio.EOF:
                await call  # raises the status that ended the call
                raise EOFError("content write ended early")
            assert isinstance(reply, pb.WriteContentResponse)
            return reply

        try:
            held = (await send(pb.WriteContentRequest(action=pb.STAT, ref=ref, total=total, expected=expected))).offset
            offset = 0
            async for chunk in data:
                skip = min(len(chunk), max(0, held - offset))
                offset += len(chunk)
                if skip < len(chunk):
                    await send(
                        pb.WriteContentRequest(
                            action=pb.WRITE, ref=ref, offset=offset - len(chunk) + skip, data=chunk[skip:]
                        )
                    )
            commit = pb.WriteContentRequest(
                action=pb.COMMIT, ref=ref, offset=offset, total=total or offset, expected=expected, labels=labels or {}
            )
            digest: str = (await send(commit)).digest
            await call.done_writing()
            return digest
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
