"""ttrpc semantics shared by client and server, without I/O.

Status codes, the errors a call can end with, metadata conversion, the request and response
envelopes (``ttrpc.Request`` / ``ttrpc.Response``) and stream-id bookkeeping all live here so
that client and server agree on them and they can be tested without sockets.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from pycontainerd.api.ttrpc import ttrpc_pb2

from .frames import MAX_MESSAGE_LENGTH, oversize_message

MAX_STREAM_ID = (1 << 32) - 1

MetadataLike = Mapping[str, str | Sequence[str]]
"""Metadata as callers may give it: one value or several per key."""

Metadata = dict[str, list[str]]
"""Metadata as received: every key maps to the list of its values, in wire order."""


class Code(enum.IntEnum):
    """google.rpc.Code, the status codes ttrpc carries (same numbers as gRPC)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def code_name(code: int) -> str:
    """The symbolic name of ``code``, or the number for codes this side does not know."""
    try:
        return Code(code).name
    except ValueError:
        return str(code)


class TTRPCError(Exception):
    """A call ended with a non-OK status (from the peer, or decided locally).

    Raise it from a server handler to choose the status sent back.

    Attributes:
        code: The status code (a :class:`Code` when known, else the raw int).
        message: The status message.
        details: The status details (``google.protobuf.Any`` messages), usually empty.
    """

    def __init__(self, code: int, message: str, details: Sequence[Any] = ()) -> None:
        try:
            self.code: int = Code(code)
        except ValueError:
            self.code = code
        self.message = message
        self.details = tuple(details)
        super().__init__(f"ttrpc: {code_name(code)}: {message}")


class TTRPCConnectionError(ConnectionError):
    """The connection is gone (or was never usable); calls on it cannot complete."""


def default_error_to_status(exc: BaseException) -> tuple[int, str]:
    """Map a handler exception to a status, as Go's ttrpc maps plain Go errors.

    :class:`TTRPCError` keeps its code; the Python counterparts of the errors Go
    recognises (``os.ErrNotExist``, ``io.EOF``...) get the same codes; anything else
    is ``UNKNOWN``.

    Args:
        exc: What the handler raised.

    Returns:
        ``(code, message)``.
    """
    if isinstance(exc, TTRPCError):
        return int(exc.code), exc.message
    mapping: tuple[tuple[type[BaseException], Code], ...] = (
        (FileNotFoundError, Code.NOT_FOUND),
        (FileExistsError, Code.ALREADY_EXISTS),
        (PermissionError, Code.PERMISSION_DENIED),
        (EOFError, Code.OUT_OF_RANGE),
        (TimeoutError, Code.DEADLINE_EXCEEDED),
    )
    for kind, code in mapping:
        if isinstance(exc, kind):
            return int(code), str(exc) or kind.__name__
    return int(Code.UNKNOWN), str(exc) or type(exc).__name__


def metadata_pairs(metadata: MetadataLike | None) -> list[ttrpc_pb2.KeyValue]:
    """Flatten metadata into the repeated ``KeyValue`` of a request (one pair per value)."""
    pairs: list[ttrpc_pb2.KeyValue] = []
    for key, values in (metadata or {}).items():
        for value in [values] if isinstance(values, str) else values:
            pairs.append(ttrpc_pb2.KeyValue(key=key, value=value))
    return pairs


def metadata_from_pairs(pairs: Sequence[Any]) -> Metadata:
    """Group a request's ``KeyValue`` pairs by key, keeping keys exactly as sent (as Go does)."""
    metadata: Metadata = {}
    for pair in pairs:
        metadata.setdefault(pair.key, []).append(pair.value)
    return metadata


def encode_request(
    service: str,
    method: str,
    payload: bytes,
    *,
    metadata: MetadataLike | None = None,
    timeout_nano: int = 0,
) -> bytes:
    """Serialize a ``ttrpc.Request``.

    Raises:
        TTRPCError: ``RESOURCE_EXHAUSTED`` if the request would exceed the frame limit;
            Go's client refuses to send such a request, so does this one.
    """
    request = ttrpc_pb2.Request(service=service, method=method, payload=payload, timeout_nano=timeout_nano)
    request.metadata.extend(metadata_pairs(metadata))
    data: bytes = request.SerializeToString()
    if len(data) > MAX_MESSAGE_LENGTH:
        raise TTRPCError(Code.RESOURCE_EXHAUSTED, oversize_message(len(data)))
    return data


def decode_request(data: bytes) -> Any:
    """Parse a ``ttrpc.Request``.

    Raises:
        TTRPCError: ``INVALID_ARGUMENT`` with Go's wording when the bytes are not a request.
    """
    request = ttrpc_pb2.Request()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise TTRPCError(Code.INVALID_ARGUMENT, f"unmarshal request error: {exc}") from exc
    return request


def encode_response(code: int, message: str = "", payload: bytes = b"") -> bytes:
    """Serialize a ``ttrpc.Response``.

    The status is always present, even when OK, as Go's server sends it. A response that
    would exceed the frame limit is replaced by a ``RESOURCE_EXHAUSTED`` status so that the
    caller learns why instead of the connection being dropped.
    """
    response = ttrpc_pb2.Response(payload=payload)
    response.status.SetInParent()
    response.status.code = code
    response.status.message = message
    data: bytes = response.SerializeToString()
    if len(data) > MAX_MESSAGE_LENGTH:
        return encode_response(Code.RESOURCE_EXHAUSTED, f"response: {oversize_message(len(data))}")
    return data


def decode_response(data: bytes) -> bytes:
    """Parse a ``ttrpc.Response`` and return its payload.

    Raises:
        TTRPCError: The status when it is not OK; ``INTERNAL`` when the envelope is corrupt.
    """
    response = ttrpc_pb2.Response()
    try:
        response.ParseFromString(data)
    except DecodeError as exc:
        raise TTRPCError(Code.INTERNAL, f"ttrpc: error unmarshalling response: {exc}") from exc
    if response.HasField("status") and response.status.code != Code.OK:
        raise TTRPCError(response.status.code, response.status.message, list(response.status.details))
    payload: bytes = response.payload
    return payload


class ClientStreamIds:
    """Allocates client stream ids: odd, starting at 1, strictly increasing on the wire."""

    def __init__(self) -> None:
        self._next = 1

    def allocate(self) -> int:
        """The next stream id.

        Raises:
            TTRPCConnectionError: When the 32-bit id space is used up; the connection must
                be replaced, since ids may never be reused.
        """
        stream_id = self._next
        if stream_id > MAX_STREAM_ID:
            raise TTRPCConnectionError("ttrpc: stream ids exhausted on this connection")
        self._next += 2
        return stream_id


class ServerStreamCheck:
    """Validates the stream ids of incoming requests as Go's server does."""

    def __init__(self) -> None:
        self._last = 0

    def check(self, stream_id: int, *, is_request: bool) -> str | None:
        """Return the ``INVALID_ARGUMENT`` message to answer with, or None if the id is fine.

        Args:
            stream_id: The id of the incoming frame.
            is_request: Whether the frame opens a stream (only those must increase).
        """
        if stream_id % 2 != 1:
            return "StreamID must be odd for client initiated streams"
        if is_request:
            if stream_id <= self._last:
                return "StreamID cannot be re-used and must increment"
            self._last = stream_id
        return None
