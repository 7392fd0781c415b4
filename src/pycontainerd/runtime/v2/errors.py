"""Errors from shims (ttrpc or gRPC statuses) as errdefs kinds."""

from __future__ import annotations

from pycontainerd import errdefs

# google.rpc.Code numbers, as ttrpc carries them.
_BY_CODE: dict[int, type[errdefs.ContainerdError]] = {
    1: errdefs.Canceled,
    3: errdefs.InvalidArgument,
    4: errdefs.DeadlineExceeded,
    5: errdefs.NotFound,
    6: errdefs.AlreadyExists,
    7: errdefs.PermissionDenied,
    9: errdefs.FailedPrecondition,
    10: errdefs.Aborted,
    11: errdefs.OutOfRange,
    12: errdefs.Unimplemented,
    13: errdefs.Internal,
    14: errdefs.Unavailable,
}


def from_status(code: int, message: str) -> errdefs.ContainerdError:
    """The errdefs kind of a google.rpc status code (both ttrpc and gRPC carry these numbers)."""
    return _BY_CODE.get(code, errdefs.Unknown)(message)


def from_ttrpc(exc: BaseException) -> errdefs.ContainerdError:
    """Map a ttrpc failure to an errdefs kind (Unavailable when the shim is gone)."""
    if isinstance(exc, errdefs.ContainerdError):
        return exc
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(code, int) and code in _BY_CODE:
        return from_status(code, message)
    if isinstance(exc, (ConnectionError, EOFError, OSError)):
        return errdefs.Unavailable(message if message.startswith("ttrpc:") else f"ttrpc: closed: {message}")
    return errdefs.Unknown(message)
