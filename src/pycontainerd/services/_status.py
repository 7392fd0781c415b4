"""The one table between error kinds and gRPC status codes (containerd's errgrpc)."""

from __future__ import annotations

import asyncio

import grpc

from pycontainerd import errdefs

# Order matters: subclasses (Conflict, NotModified) before FailedPrecondition.
_TO_CODE: tuple[tuple[type[errdefs.ContainerdError], grpc.StatusCode], ...] = (
    (errdefs.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errdefs.NotFound, grpc.StatusCode.NOT_FOUND),
    (errdefs.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errdefs.Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.NotModified, grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errdefs.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errdefs.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
    (errdefs.Aborted, grpc.StatusCode.ABORTED),
    (errdefs.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errdefs.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errdefs.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errdefs.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errdefs.Canceled, grpc.StatusCode.CANCELLED),
    (errdefs.Internal, grpc.StatusCode.INTERNAL),
    (errdefs.Unknown, grpc.StatusCode.UNKNOWN),
)

_FROM_CODE: dict[grpc.StatusCode, type[errdefs.ContainerdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errdefs.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errdefs.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errdefs.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errdefs.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errdefs.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errdefs.Unimplemented,
    grpc.StatusCode.ABORTED: errdefs.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: errdefs.OutOfRange,
    grpc.StatusCode.PERMISSION_DENIED: errdefs.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errdefs.ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: errdefs.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errdefs.Canceled,
    grpc.StatusCode.INTERNAL: errdefs.Internal,
}


def with_kind_suffix(exc: errdefs.ContainerdError) -> str:
    """The message as containerd words it: ``<what>: <kind>`` (``namespace "x": not found``)."""
    message, suffix = exc.message, type(exc).default_message
    if message == suffix or message.endswith(f": {suffix}"):
        return message
    return f"{message}: {suffix}"


def to_grpc(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client should see for ``exc``."""
    if isinstance(exc, errdefs.ContainerdError):
        for kind, code in _TO_CODE:
            if isinstance(exc, kind):
                return code, with_kind_suffix(exc)
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED, "canceled"
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "deadline exceeded"
    return grpc.StatusCode.UNKNOWN, str(exc) or type(exc).__name__


def from_grpc(code: grpc.StatusCode, message: str) -> errdefs.ContainerdError:
    """The error kind a client raises for a status (containerd's errgrpc.ToNative)."""
    return _FROM_CODE.get(code, errdefs.Unknown)(message)
