"""Error kinds shared by every layer, mirroring containerd's errdefs.

Core code raises these; only ``services/_status.py`` (and the client) translate them to and
from gRPC status codes. Each class names one *kind* of failure, so callers test with
``isinstance`` rather than by matching messages.
"""

from __future__ import annotations


class ContainerdError(Exception):
    """Base of every error kind; not raised directly."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)

    default_message = "error"

    @property
    def message(self) -> str:
        """The human-readable message, as sent in the gRPC status."""
        return str(self.args[0]) if self.args else self.default_message


class Unknown(ContainerdError):
    """An error of no known kind."""

    default_message = "unknown"


class InvalidArgument(ContainerdError):
    """The caller sent something malformed (a bad identifier, digest, filter...)."""

    default_message = "invalid argument"


class NotFound(ContainerdError):
    """The named object does not exist (in this namespace)."""

    default_message = "not found"


class AlreadyExists(ContainerdError):
    """An object with that name already exists."""

    default_message = "already exists"


class FailedPrecondition(ContainerdError):
    """The system is not in a state that allows the operation (e.g. namespace not empty)."""

    default_message = "failed precondition"


class Conflict(FailedPrecondition):
    """A conflicting change happened concurrently; maps to FailedPrecondition like containerd."""

    default_message = "conflict"


class NotModified(FailedPrecondition):
    """Nothing changed; maps to FailedPrecondition like containerd."""

    default_message = "not modified"


class Unavailable(ContainerdError):
    """A resource (an ingest ref, a backend) is busy or not reachable right now."""

    default_message = "unavailable"


class Unimplemented(ContainerdError):
    """The operation is not supported by this implementation (containerd's ErrNotImplemented).

    Not named ``NotImplemented``: that shadows a builtin and linters "fix" ``raise
    NotImplemented(...)`` into the builtin NotImplementedError.
    """

    default_message = "not implemented"


class Aborted(ContainerdError):
    """The operation was aborted."""

    default_message = "aborted"


class OutOfRange(ContainerdError):
    """An offset or size lies outside what the object holds."""

    default_message = "out of range"


class PermissionDenied(ContainerdError):
    """The caller may not perform the operation."""

    default_message = "permission denied"


class ResourceExhausted(ContainerdError):
    """A quota or limit was hit."""

    default_message = "resource exhausted"


class DeadlineExceeded(ContainerdError):
    """The operation did not finish before its deadline."""

    default_message = "deadline exceeded"


class Canceled(ContainerdError):
    """The caller cancelled the operation."""

    default_message = "canceled"


class Internal(ContainerdError):
    """An invariant of the implementation did not hold."""

    default_message = "internal"


ALL_KINDS: tuple[type[ContainerdError], ...] = (
    Unknown,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Conflict,
    NotModified,
    Unavailable,
    Unimplemented,
    Aborted,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    DeadlineExceeded,
    Canceled,
    Internal,
)


# google.rpc.Code numbers of each kind, for protocols without a status enum of their own (ttrpc).
_RPC_CODES: tuple[tuple[type[ContainerdError], int], ...] = (
    (InvalidArgument, 3),
    (NotFound, 5),
    (AlreadyExists, 6),
    (FailedPrecondition, 9),  # Conflict and NotModified included, as containerd maps them
    (Unavailable, 14),
    (Unimplemented, 12),
    (Aborted, 10),
    (OutOfRange, 11),
    (PermissionDenied, 7),
    (ResourceExhausted, 8),
    (DeadlineExceeded, 4),
    (Canceled, 1),
    (Internal, 13),
)


def rpc_status(exc: BaseException) -> tuple[int, str]:
    """``(google.rpc code, message)`` for an exception; Unknown (2) for foreign errors."""
    for kind, code in _RPC_CODES:
        if isinstance(exc, kind):
            return code, exc.message
    return 2, str(exc) or type(exc).__name__
