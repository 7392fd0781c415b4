from __future__ import annotations

import grpc
import pytest

from pycontainerd import errdefs
from pycontainerd.services._status import from_grpc, to_grpc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errdefs.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errdefs.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errdefs.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errdefs.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errdefs.Conflict("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errdefs.NotModified("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errdefs.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errdefs.Unimplemented("x"), grpc.StatusCode.UNIMPLEMENTED),
        (errdefs.Canceled("x"), grpc.StatusCode.CANCELLED),
        (errdefs.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (RuntimeError("boom"), grpc.StatusCode.UNKNOWN),
    ],
)
def test_codes(exc: Exception, code: grpc.StatusCode) -> None:
    assert to_grpc(exc)[0] is code


def test_messages_end_with_the_kind_like_containerd() -> None:
    assert to_grpc(errdefs.NotFound('namespace "x"'))[1] == 'namespace "x": not found'
    assert to_grpc(errdefs.NotFound("thing: not found"))[1] == "thing: not found"


def test_round_trip_kinds() -> None:
    for kind in (errdefs.NotFound, errdefs.AlreadyExists, errdefs.InvalidArgument, errdefs.Unavailable):
        code, message = to_grpc(kind("m"))
        assert type(from_grpc(code, message)) is kind
