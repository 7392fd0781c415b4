"""A content store served by another process (``[proxy_plugins]`` of type ``content``).

The other end speaks ``containerd.services.content.v1.Content`` on a unix socket: a process
made with :mod:`pycontainerd.content.service`, or any server of that API. :class:`ProxyContentStore`
has the same backend interface as ``content.local.LocalStore`` (info, read_at, delete, walk,
status, list_statuses, abort, writer), so the metadata layer wraps it exactly like the local
store; it has no ``path()``: blobs are read over the wire (:meth:`ProxyContentStore.reader`).

The write protocol (containerd's ``remoteWriter``): one bidirectional ``Write`` stream per
writer. The first message (``STAT`` with ref, total, expected) opens or resumes the ingest and
locks the ref for the stream's life; each ``WRITE`` carries the offset it expects to append
at (offset 0 on a started ingest restarts it); ``COMMIT`` verifies size and digest and ends the
stream. Ending the stream without a commit leaves the ingest resumable.

Calls block (a synchronous gRPC channel, thread-safe): the metadata layer calls its backend
synchronously. Errors come back as the same :mod:`pycontainerd.errdefs` kinds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import time
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.api.containerd.services.content.v1 import content_pb2 as pb
from pycontainerd.api.containerd.services.content.v1 import content_pb2_grpc as pb_grpc
from pycontainerd.core.content import SHA256, Info, Status, parse_digest
from pycontainerd.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    Unavailable,
    Unimplemented,
)
from pycontainerd.namespaces import GRPC_LEASE_HEADER, GRPC_NAMESPACE_HEADER
from pycontainerd.pbtime import from_timestamp
from pycontainerd.services._status import from_grpc

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from pycontainerd.namespaces import RequestContext

CALL_TIMEOUT = 120.0
MAX_MESSAGE = 16 << 20
# containerd's remote writer sends at most half the message limit per WRITE.
WRITE_CHUNK = MAX_MESSAGE >> 1
READ_BUFFER = 1 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # A proxy that was down is found again within a second of its return (containerd: 3 s at most);
    # meanwhile calls fail at once with Unavailable.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_END = object()


def native_error(exc: grpc.RpcError) -> ContainerdError:
    """The error kind of a failed call, its message without the kind the server appended."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    err = from_grpc(code, details)
    suffix = f": {type(err).default_message}"
    if details.endswith(suffix):
        err = type(err)(details.removesuffix(suffix))
    return err


def _target(address: str) -> str:
    return address if address.startswith("unix:") else f"unix:{address}"


def info_from_pb(i: pb.Info) -> Info:
    """Protobuf blob info to core."""
    return Info(i.digest, i.size, from_timestamp(i.created_at), from_timestamp(i.updated_at), dict(i.labels))


def status_from_pb(s: pb.Status) -> Status:
    """Protobuf ingest status to core."""
    return Status(s.ref, s.offset, s.total, s.expected, from_timestamp(s.started_at), from_timestamp(s.updated_at))


class ProxyContentStore:
    """The content backend interface over a Content API client.

    ``namespace`` and ``lease``, when set, are sent with every call (a differ reading the
    daemon's namespaced store does this); a proxy plugin under the metadata layer sends none.
    """

    def __init__(
        self, address: str, *, namespace: str = "", lease: str = "", channel: grpc.Channel | None = None
    ) -> None:
        self.address = address
        self._owns_channel = channel is None
        self._channel = channel if channel is not None else grpc.insecure_channel(_target(address), CHANNEL_OPTIONS)
        self._stub = pb_grpc.ContentStub(self._channel)
        headers = []
        if namespace:
            headers.append((GRPC_NAMESPACE_HEADER, namespace))
        if lease:
            headers.append((GRPC_LEASE_HEADER, lease))
        self._metadata = tuple(headers)

    def with_context(self, ctx: RequestContext) -> ProxyContentStore:
        """A store acting in the namespace (and lease) of ``ctx``, sharing this connection."""
        return ProxyContentStore(self.address, namespace=ctx.namespace, lease=ctx.lease, channel=self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=CALL_TIMEOUT, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise native_error(exc) from None

    # -- blobs -----------------------------------------------------------------------------

    def info(self, digest: str) -> Info:
        """Size and times of a blob; NotFound if absent, InvalidArgument if malformed."""
        parse_digest(digest)
        return info_from_pb(self._call("Info", pb.InfoRequest(digest=digest)).info)

    def update(self, info: Info, fieldpaths: list[str] | None = None) -> Info:
        """Change the blob's labels on the remote (stores without labels refuse)."""
        from google.protobuf import field_mask_pb2

        request = pb.UpdateRequest(info=pb.Info(digest=info.digest, labels=info.labels))
        if fieldpaths:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(fieldpaths)))
        return info_from_pb(self._call("Update", request).info)

    def _read(self, digest: str, offset: int, size: int) -> Iterator[pb.ReadContentResponse]:
        try:
            yield from self._stub.Read(
                pb.ReadContentRequest(digest=digest, offset=offset, size=size), metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise native_error(exc) from None

    def read_at(self, digest: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (``size <= 0``: to the end); fewer past the end."""
        parse_digest(digest)
        if offset < 0:
            raise InvalidArgument(f"negative read offset {offset}")
        parts: list[bytes] = []
        try:
            for reply in self._read(digest, offset, max(size, 0)):
                parts.append(reply.data)
        except OutOfRange:
            return b""  # an offset past the end: nothing, as the local store answers
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def reader(self, digest: str, offset: int = 0) -> io.BufferedReader:
        """The blob from ``offset`` as one streaming read (a buffered reader; blocking)."""
        parse_digest(digest)
        if offset < 0:
            raise InvalidArgument(f"negative read offset {offset}")
        return io.BufferedReader(_StreamReader(self, digest, offset), READ_BUFFER)

    def delete(self, digest: str) -> None:
        """Remove a blob; NotFound if absent."""
        parse_digest(digest)
        self._call("Delete", pb.DeleteContentRequest(digest=digest))

    def walk(self) -> Iterator[Info]:
        """Every committed blob the remote holds."""
        try:
            replies = list(self._stub.List(pb.ListContentRequest(), timeout=CALL_TIMEOUT, metadata=self._metadata))
        except grpc.RpcError as exc:
            raise native_error(exc) from None
        for reply in replies:
            yield from (info_from_pb(i) for i in reply.info)

    # -- ingests ---------------------------------------------------------------------------

    def status(self, ref: str) -> Status:
        """Progress of the ingest ``ref``; NotFound if there is none."""
        return status_from_pb(self._call("Status", pb.StatusRequest(ref=ref)).status)

    def list_statuses(self) -> list[Status]:
        """Every ingest of the remote."""
        reply = self._call("ListStatuses", pb.ListStatusesRequest())
        return sorted((status_from_pb(s) for s in reply.statuses), key=lambda s: s.ref)

    def abort(self, ref: str) -> None:
        """Remove the ingest ``ref``; NotFound if there is none, Unavailable while a writer holds it."""
        self._call("Abort", pb.AbortRequest(ref=ref))

    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> ProxyWriter:
        """Open (or resume) the ingest ``ref`` on the remote; the ref stays locked until close or commit.

        Raises:
            InvalidArgument: empty ref, negative total or malformed ``expected``.
            Unavailable: another writer holds ``ref``, or the remote is down.
            AlreadyExists: the remote holds the blob ``expected`` already.
        """
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if total < 0:
            raise InvalidArgument(f"negative total {total}")
        if expected:
            parse_digest(expected)
        return ProxyWriter(self, ref, total, expected)

    def close(self) -> None:
        """Close the connection (when this store opened it)."""
        if self._owns_channel:
            self._channel.close()


class _StreamReader(io.RawIOBase):
    """One ``Read`` stream as a raw file (blocking); cancelled when closed early."""

    def __init__(self, store: ProxyContentStore, digest: str, offset: int) -> None:
        super().__init__()
        self._call = store._stub.Read(pb.ReadContentRequest(digest=digest, offset=offset), metadata=store._metadata)
        self._pending = b""
        self._done = False
        # Fail now (NotFound...) rather than at the first read.
        self._fill()

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._pending and not self._done:
            try:
                self._pending = next(self._call).data
            except StopIteration:
                self._done = True
            except grpc.RpcError as exc:
                self._done = True
                err = native_error(exc)
                if isinstance(err, OutOfRange):
                    return
                raise err from None

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self._fill()
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed and not self._done:
            self._call.cancel()
        super().close()


class ProxyWriter:
    """One remote ingest, written through a ``Write`` stream (see the module docstring).

    Compatible with ``content.local.Writer``: ``offset``, ``digest()``, ``status()``,
    ``write``, ``truncate`` (to 0, or to the current offset: the API cannot cut an ingest
    elsewhere), ``commit`` and ``close``. Use it from one thread at a time.
    """

    def __init__(self, store: ProxyContentStore, ref: str, total: int, expected: str) -> None:
        self._ref = ref
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._responses = store._stub.Write(iter(self._requests.get, _END), metadata=store._metadata)
        self._open = True
        self._ended = False
        self._algorithm = expected.partition(":")[0] if expected else SHA256
        try:
            reply = self._send(pb.WriteContentRequest(action=pb.STAT, ref=ref, total=total, expected=expected))
        except BaseException:
            self._end()
            raise
        self._offset = reply.offset
        self._digest = reply.digest or _empty_digest(self._algorithm)
        self._total = reply.total or total
        self._expected = expected
        self._started_at = from_timestamp(reply.started_at)
        self._updated_at = from_timestamp(reply.updated_at) or self._started_at
        if not expected:
            # The ingest may record an expected digest from an earlier session.
            with contextlib.suppress(ContainerdError):
                self._expected = store.status(ref).expected

    def __enter__(self) -> ProxyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ref(self) -> str:
        """The ingest's ref."""
        return self._ref

    @property
    def offset(self) -> int:
        """Bytes written so far (including those the remote had when resuming)."""
        return self._offset

    def digest(self) -> str:
        """Digest of the bytes written so far, as the remote last reported it."""
        return self._digest

    def status(self) -> Status:
        """Progress of this ingest, as the writer sees it (no call to the remote)."""
        return Status(self._ref, self._offset, self._total, self._expected, self._started_at, self._updated_at)

    def _send(self, request: pb.WriteContentRequest) -> pb.WriteContentResponse:
        self._requests.put(request)
        try:
            reply: pb.WriteContentResponse = next(self._responses)
        except StopIteration:
            raise Unavailable(f"write stream for ref {self._ref} ended") from None
        except grpc.RpcError as exc:
            raise native_error(exc) from None
        if reply.digest:
            self._digest = reply.digest
        return reply

    def _check_open(self) -> None:
        if not self._open:
            raise FailedPrecondition(f"writer for ref {self._ref} is closed")

    def write(self, data: bytes) -> None:
        """Append ``data`` (sent in messages of at most 8 MiB, each acknowledged).

        Raises:
            FailedPrecondition: the writer was closed or committed.
            OutOfRange: the remote's ingest is not where this writer thinks it is.
        """
        self._check_open()
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WRITE_CHUNK):
            chunk = bytes(view[start : start + WRITE_CHUNK])
            try:
                reply = self._send(pb.WriteContentRequest(action=pb.WRITE, offset=self._offset, data=chunk))
            except BaseException:
                self._fail()
                raise
            if reply.offset != self._offset + len(chunk):
                self._fail()
                raise Unavailable(f"remote ingest {self._ref} at {reply.offset}, expected {self._offset + len(chunk)}")
            self._offset = reply.offset
            self._updated_at = time.time_ns()

    def truncate(self, size: int) -> None:
        """Restart the ingest (``size`` 0); any other size but the current offset is Unimplemented.

        Raises:
            InvalidArgument: ``size`` is negative or beyond the current offset.
            FailedPrecondition: the writer was closed or committed.
        """
        self._check_open()
        if size < 0 or size > self._offset:
            raise InvalidArgument(f"cannot truncate ingest {self._ref} to {size}: offset is {self._offset}")
        if size == self._offset:
            return
        if size:
            raise Unimplemented(f"the Content API can only restart ingest {self._ref}, not cut it at {size}")
        # A WRITE at offset 0 without data makes the remote truncate its ingest.
        try:
            reply = self._send(pb.WriteContentRequest(action=pb.WRITE, offset=0))
        except BaseException:
            self._fail()
            raise
        self._offset = reply.offset
        self._digest = _empty_digest(self._algorithm)
        self._updated_at = time.time_ns()

    def commit(self, size: int, expected: str, labels: Mapping[str, str] | None = None) -> str:
        """Verify the ingest on the remote and make it a blob; returns its digest.

        The writer is closed afterwards whatever the outcome; after a size or digest mismatch
        (FailedPrecondition) the ingest stays on the remote, resumable.

        Raises:
            FailedPrecondition: closed writer, size or digest mismatch.
            AlreadyExists: the remote holds the blob already (the ingest is removed).
            InvalidArgument: ``expected`` is not a digest.
        """
        if expected:
            parse_digest(expected)
        self._check_open()
        self._open = False
        try:
            request = pb.WriteContentRequest(
                action=pb.COMMIT, offset=self._offset, total=size, expected=expected, labels=dict(labels or {})
            )
            try:
                reply = self._send(request)
            except AlreadyExists:
                if expected:
                    self._digest = expected
                raise
            if size and reply.offset != size:
                raise FailedPrecondition(f"unexpected commit size {reply.offset}, expected {size}")
            if expected and reply.digest != expected:
                raise FailedPrecondition(f"unexpected commit digest {reply.digest}, expected {expected}")
            self._offset = reply.offset
            return self._digest
        finally:
            self._end()

    def close(self) -> None:
        """End the session; the ingest stays on the remote for a later writer to resume.

        Returns once the remote has released the ref. Closing twice, or after commit, does nothing.
        """
        self._open = False
        self._end()

    def _fail(self) -> None:
        self._open = False
        self._end()

    def __del__(self) -> None:
        # A writer dropped without close: end the request stream so that gRPC's sending thread
        # and the remote's lock on the ref are released (without waiting here).
        if not getattr(self, "_ended", True):
            self._ended = True
            self._requests.put(_END)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._requests.put(_END)
        # Wait for the remote to finish the call: only then is the ref unlocked for the next writer.
        with contextlib.suppress(grpc.RpcError):
            for _ in self._responses:
                pass


def _empty_digest(algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm).hexdigest()}"
