"""Fuzzing the daemon's ttrpc socket (``<address>.ttrpc``, where shims publish events): frames
with any stream id, type and flags; lengths over the 4 MiB limit and with the reserved byte set;
headers and payloads cut short; Request envelopes that are not protobuf; Forward requests whose
payload is garbage or an arbitrary envelope.

Every answer must be a well-formed Response frame whose status names the problem (never
UNKNOWN, the code of an unhandled exception); a frame that cannot be ttrpc may close that
connection, and nothing else: afterwards a new connection gets answers, and the gRPC socket
still answers Version.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2
from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.ttrpc.frames import MAX_MESSAGE_LENGTH, Frame, FrameDecoder, MessageType, encode_frame
from pycontainerd.ttrpc.protocol import Code
from tests.fuzz.budget import count, fuzz_settings
from tests.fuzz.daemonfuzz import RawClient, assert_serving, unexpected_in_log
from tests.fuzz.protofuzz import messages
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.fuzz]

SERVICE = "containerd.services.events.ttrpc.v1.Events"
HEADER = struct.Struct(">IIBB")
READ_TIMEOUT = 10.0
PROBE = 2**32 - 1  # the largest odd stream id: valid after any other request


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as d:
        yield d


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[RawClient]:
    c = RawClient(str(daemon.address))
    yield c
    c.close()


@pytest.fixture(autouse=True)
def still_serving(daemon: DaemonProcess, client: RawClient) -> Iterator[None]:
    since = len(daemon.log())
    yield
    assert_serving(daemon, client)
    assert ttrpc_answers(daemon), "the ttrpc socket no longer answers a valid request"
    assert not unexpected_in_log(daemon, since), "\n\n".join(unexpected_in_log(daemon, since))


def connect(d: DaemonProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(f"{d.address}.ttrpc")
    return sock


def request(method: str, payload: bytes, service: str = SERVICE, timeout_nano: int = 0) -> bytes:
    return ttrpc_pb2.Request(
        service=service, method=method, payload=payload, timeout_nano=timeout_nano
    ).SerializeToString()


def valid_forward() -> bytes:
    envelope = events_pb2.ForwardRequest()
    envelope.envelope.namespace = "fuzz"
    envelope.envelope.topic = "/fuzz/check"
    envelope.envelope.event.type_url = "containerd.events.ContainerCreate"
    return request("Forward", envelope.SerializeToString())


def responses(sock: socket.socket, *, wait: float = READ_TIMEOUT, until: int | None = None) -> tuple[list[Frame], bool]:
    """Frames the server sends until it closes, answers stream ``until`` or pauses for ``wait``
    seconds; and whether it closed."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    sock.settimeout(wait)
    while True:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            return frames, False
        except ConnectionResetError:
            return frames, True
        if not data:
            return frames, True
        for event in decoder.feed(data):
            assert isinstance(event, Frame), f"the server sent an oversized frame: {event}"
            frames.append(event)
            if event.stream_id == until:
                return frames, False


def check_answers(frames: list[Frame]) -> None:
    for frame in frames:
        assert frame.type == MessageType.RESPONSE, f"the server sent a frame of type {frame.type}"
        response = ttrpc_pb2.Response.FromString(frame.payload)
        assert response.status.code != Code.UNKNOWN, f"UNKNOWN status: {response.status.message}"


def ttrpc_answers(d: DaemonProcess) -> bool:
    """A fresh connection gets an OK answer to a valid Forward."""
    with connect(d) as sock:
        sock.sendall(encode_frame(1, MessageType.REQUEST, valid_forward()))
        frames, _ = responses(sock, wait=10)
        return bool(frames) and ttrpc_pb2.Response.FromString(frames[0].payload).status.code == Code.OK


FORWARD_PAYLOADS = st.one_of(
    st.binary(max_size=100), messages(events_pb2.ForwardRequest.DESCRIPTOR).map(lambda m: m.SerializeToString())
)
ENVELOPES = st.one_of(
    st.binary(max_size=100),
    st.builds(
        request,
        method=st.sampled_from(["Forward", "Forward", "Publish", "", "x" * 300]),
        payload=FORWARD_PAYLOADS,
        service=st.sampled_from([SERVICE, SERVICE, "containerd.task.v2.Task", "", "a/b"]),
        timeout_nano=st.sampled_from([0, 0, 1, -1, 2**62, 10**6]),
    ),
)
FRAMES = st.tuples(
    st.one_of(st.sampled_from([1, 3, 5, 2, 0, 2**32 - 1]), st.integers(0, 2**32 - 1)),  # stream id
    st.one_of(
        st.sampled_from([MessageType.REQUEST] * 4 + [MessageType.RESPONSE, MessageType.DATA]), st.integers(0, 255)
    ),
    st.integers(0, 255),  # flags
    ENVELOPES,
)


@fuzz_settings(250)
@given(frames=st.lists(FRAMES, min_size=1, max_size=4), cut=st.integers(0, 40), close_early=st.booleans())
def test_random_frames(
    daemon: DaemonProcess, frames: list[tuple[int, int, int, bytes]], cut: int, close_early: bool
) -> None:
    count("ttrpc: frame sequences")
    data = b"".join(HEADER.pack(len(p), sid, kind, flags) + p for sid, kind, flags, p in frames)
    if close_early:
        data = data[: max(len(data) - cut, 1)]  # the last frame cut short, then the connection closed
    with connect(daemon) as sock:
        sock.sendall(data)
        if close_early:
            sock.shutdown(socket.SHUT_WR)  # the server answers what it can, then closes
            answers, _ = responses(sock)
        else:
            # A last valid request: once it is answered, so is everything before it (or the
            # server closed the connection on something that cannot be ttrpc).
            sock.sendall(encode_frame(PROBE, MessageType.REQUEST, valid_forward()))
            answers, closed = responses(sock, until=PROBE)
            assert closed or answers[-1].stream_id == PROBE
    check_answers(answers)


@fuzz_settings(100)
@given(header=st.binary(min_size=10, max_size=10), tail=st.binary(max_size=64))
def test_arbitrary_headers(daemon: DaemonProcess, header: bytes, tail: bytes) -> None:
    """Any 10 bytes as a header: a length with the reserved byte set closes the connection, a
    length over 4 MiB is answered RESOURCE_EXHAUSTED once its bytes arrive, anything else waits
    for its payload."""
    count("ttrpc: arbitrary headers")
    with connect(daemon) as sock:
        sock.sendall(header + tail)
        sock.shutdown(socket.SHUT_WR)
        answers, _ = responses(sock)
    check_answers(answers)


def test_reserved_length_byte_closes_only_that_connection(daemon: DaemonProcess) -> None:
    count("ttrpc: oversized and truncated", 2)
    with connect(daemon) as bystander, connect(daemon) as sock:
        sock.sendall(HEADER.pack(0xFF000000, 1, MessageType.REQUEST, 0))
        answers, closed = responses(sock, wait=5)
        assert closed and not answers
        bystander.sendall(encode_frame(1, MessageType.REQUEST, valid_forward()))
        answers, _ = responses(bystander, wait=10)
        assert [ttrpc_pb2.Response.FromString(f.payload).status.code for f in answers] == [Code.OK]


def test_over_limit_frame_is_refused_and_the_connection_goes_on(daemon: DaemonProcess) -> None:
    """Go's ttrpc: RESOURCE_EXHAUSTED on that stream, the data skipped, the connection kept."""
    count("ttrpc: oversized and truncated")
    length = MAX_MESSAGE_LENGTH + 1
    with connect(daemon) as sock:
        sock.sendall(HEADER.pack(length, 1, MessageType.REQUEST, 0) + b"\0" * length)
        sock.sendall(encode_frame(3, MessageType.REQUEST, valid_forward()))
        answers, closed = responses(sock, wait=10)
    codes = {f.stream_id: ttrpc_pb2.Response.FromString(f.payload).status.code for f in answers}
    assert codes == {1: Code.RESOURCE_EXHAUSTED, 3: Code.OK}, codes
    assert not closed


def test_unknown_type_is_ignored_and_garbage_protobuf_refused(daemon: DaemonProcess) -> None:
    count("ttrpc: oversized and truncated", 3)
    with connect(daemon) as sock:
        sock.sendall(encode_frame(1, 0x7F, b"whatever"))  # unknown type: ignored, as in Go
        sock.sendall(encode_frame(3, MessageType.REQUEST, b"\xff\xff\xff"))  # not a Request
        sock.sendall(
            encode_frame(5, MessageType.REQUEST, request("Forward", b"\xff\xff"))
        )  # payload not a ForwardRequest
        sock.sendall(encode_frame(7, MessageType.REQUEST, valid_forward()))
        answers, _ = responses(sock, wait=10)
    codes = {f.stream_id: ttrpc_pb2.Response.FromString(f.payload).status.code for f in answers}
    assert codes == {3: Code.INVALID_ARGUMENT, 5: Code.INTERNAL, 7: Code.OK}, codes


def test_truncated_frames_then_close(daemon: DaemonProcess) -> None:
    count("ttrpc: oversized and truncated", 3)
    frame = encode_frame(1, MessageType.REQUEST, valid_forward())
    for cut in (3, 10, len(frame) - 1):
        with connect(daemon) as sock:
            sock.sendall(frame[:cut])
            sock.shutdown(socket.SHUT_WR)
            answers, closed = responses(sock, wait=5)
            assert not answers and closed


def test_a_thousand_idle_streams_on_one_connection(daemon: DaemonProcess) -> None:
    """Many requests at once on one connection (every odd stream id), all answered."""
    count("ttrpc: oversized and truncated", 1000)
    with connect(daemon) as sock:
        sock.sendall(b"".join(encode_frame(2 * i + 1, MessageType.REQUEST, valid_forward()) for i in range(1000)))
        answers, _ = responses(sock, wait=10)
    assert len(answers) == 1000
    check_answers(answers)
