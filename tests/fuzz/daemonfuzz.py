"""Talking to a running daemon with raw bytes: raw gRPC calls with any payload, and the checks
that follow every fuzzed input (the daemon still answers Version; its log holds no unexpected
error)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from tests.support.daemon import DaemonProcess

VERSION = "/containerd.services.version.v1.Version/Version"
CALL_TIMEOUT = 15.0
MAX_MESSAGE = 32 << 20  # our side may send more than the daemon accepts (16 MiB)

# What the daemon logs when a handler raised something that is not an error kind (the client
# then sees UNKNOWN) or a background task died; none of it may follow a fuzzed input.
UNEXPECTED = re.compile(r"unexpected error in|Task exception was never retrieved|Exception in callback|Unhandled error")


@dataclass(frozen=True)
class Outcome:
    """How a call ended."""

    code: grpc.StatusCode
    details: str


class RawClient:
    """gRPC calls whose requests and responses stay bytes: any payload can be sent."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(
            f"unix://{address}",
            options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)],
        )

    def close(self) -> None:
        self.channel.close()

    def call(
        self,
        path: str,
        payloads: Sequence[bytes],
        *,
        streaming_request: bool = False,
        streaming_response: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float = CALL_TIMEOUT,
    ) -> Outcome:
        """Call ``path`` with ``payloads`` (one for a unary request); read at most a few response
        messages of a stream, then cancel it."""
        md = tuple(metadata)
        try:
            if streaming_request and streaming_response:
                stream = self.channel.stream_stream(path)(iter(payloads), timeout=timeout, metadata=md)
                return _drain(stream)
            if streaming_request:
                self.channel.stream_unary(path)(iter(payloads), timeout=timeout, metadata=md)
            elif streaming_response:
                return _drain(self.channel.unary_stream(path)(payloads[0], timeout=timeout, metadata=md))
            else:
                self.channel.unary_unary(path)(payloads[0], timeout=timeout, metadata=md)
        except grpc.RpcError as exc:
            return Outcome(exc.code(), exc.details() or "")  # type: ignore[attr-defined]
        return Outcome(grpc.StatusCode.OK, "")


def _drain(stream: Iterator[bytes]) -> Outcome:
    try:
        for n, _ in enumerate(stream):
            if n >= 3:
                stream.cancel()  # type: ignore[attr-defined]
                return Outcome(grpc.StatusCode.OK, "")
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "")  # type: ignore[attr-defined]
    return Outcome(grpc.StatusCode.OK, "")


def assert_serving(d: DaemonProcess, client: RawClient) -> None:
    """The daemon is alive and answers a Version call."""
    assert d.proc is not None and d.proc.poll() is None, f"the daemon exited:\n{d.log()[-5000:]}"
    outcome = client.call(VERSION, [b""], timeout=30)
    assert outcome.code == grpc.StatusCode.OK, f"Version failed after fuzzing: {outcome}"


def unexpected_in_log(d: DaemonProcess, since: int = 0) -> list[str]:
    """Lines of the daemon's log (from byte ``since``) telling of an unexpected error, each with
    the lines that follow it (the traceback)."""
    lines = d.log()[since:].splitlines()
    found = []
    for i, line in enumerate(lines):
        if UNEXPECTED.search(line):
            found.append("\n".join(lines[i : i + 25]))
    return found
