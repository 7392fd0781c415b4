"""Sans-I/O ttrpc: framing and envelope semantics, checked byte for byte."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.ttrpc.frames import (
    HEADER_LENGTH,
    MAX_MESSAGE_LENGTH,
    Frame,
    FrameDecoder,
    FrameError,
    FrameTooLargeError,
    MessageType,
    OversizedFrame,
    encode_frame,
    encode_header,
)
from pycontainerd.ttrpc.protocol import (
    ClientStreamIds,
    Code,
    ServerStreamCheck,
    TTRPCConnectionError,
    TTRPCError,
    decode_request,
    decode_response,
    default_error_to_status,
    encode_request,
    encode_response,
    metadata_from_pairs,
)


def test_header_layout_is_big_endian_length_stream_type_flags() -> None:
    assert encode_header(0x01020304, MessageType.RESPONSE, 0x0A0B0C, flags=0x05) == bytes.fromhex(
        "000a0b0c010203040205"
    )
    assert len(encode_header(1, 1, 0)) == HEADER_LENGTH == 10


def test_encode_frame_appends_payload() -> None:
    assert (
        encode_frame(1, MessageType.REQUEST, b"abc")
        == bytes.fromhex("00000003 00000001 01 00".replace(" ", "")) + b"abc"
    )


def test_encode_refuses_oversize_payload_with_go_wording() -> None:
    encode_frame(1, MessageType.REQUEST, b"x" * MAX_MESSAGE_LENGTH)  # exactly the limit is fine
    with pytest.raises(FrameTooLargeError, match=r"message length 4194305 exceed maximum message size of 4194304"):
        encode_frame(1, MessageType.REQUEST, b"x" * (MAX_MESSAGE_LENGTH + 1))


def test_encode_rejects_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="header"):
        encode_header(1 << 32, MessageType.REQUEST, 0)
    with pytest.raises(ValueError, match="header"):
        encode_header(1, 256, 0)


def test_decoder_returns_nothing_until_a_frame_is_complete() -> None:
    wire = encode_frame(7, MessageType.RESPONSE, b"hello", flags=3)
    decoder = FrameDecoder()
    events = []
    for i in range(len(wire)):
        got = decoder.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert got == []
            assert not decoder.idle
        events.extend(got)
    assert events == [Frame(stream_id=7, type=MessageType.RESPONSE, flags=3, payload=b"hello")]
    assert decoder.idle
    assert decoder.buffered == 0


def test_decoder_splits_many_frames_in_one_chunk_and_keeps_the_tail() -> None:
    frames = [encode_frame(i, MessageType.REQUEST, bytes([i]) * i) for i in range(1, 100, 2)]
    tail = encode_frame(101, MessageType.REQUEST, b"tail")
    decoder = FrameDecoder()
    events = decoder.feed(b"".join(frames) + tail[:12])
    assert [e.stream_id for e in events] == list(range(1, 100, 2))
    assert all(isinstance(e, Frame) and e.payload == bytes([e.stream_id]) * e.stream_id for e in events)
    assert decoder.buffered == 12
    assert decoder.feed(tail[12:]) == [Frame(101, 1, 0, b"tail")]


def test_decoder_accepts_empty_payload_and_unknown_types() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(3, 0x42, b"")) == [Frame(3, 0x42, 0, b"")]


def test_decoder_skips_oversized_frame_and_resynchronises() -> None:
    length = MAX_MESSAGE_LENGTH + 10
    # encode_header refuses such a length, so the header is crafted by hand.
    wire = length.to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([1, 0])
    body = b"z" * length
    after = encode_frame(7, MessageType.REQUEST, b"next")
    decoder = FrameDecoder()
    events = decoder.feed(wire + body[:1000])
    assert events == [OversizedFrame(stream_id=5, type=1, flags=0, length=length)]
    assert isinstance(events[0], OversizedFrame)
    assert "exceed maximum message size" in events[0].message
    assert decoder.buffered == 0  # oversize data is dropped, never buffered
    chunk = 65536
    rest = body[1000:]
    for i in range(0, len(rest), chunk):
        assert decoder.feed(rest[i : i + chunk]) == []
    assert decoder.feed(after) == [Frame(7, 1, 0, b"next")]


def test_decoder_oversized_frame_entirely_in_one_chunk() -> None:
    length = MAX_MESSAGE_LENGTH + 1
    wire = length.to_bytes(4, "big") + (9).to_bytes(4, "big") + bytes([1, 0]) + b"q" * length
    events = FrameDecoder().feed(wire + encode_frame(11, 1, b"ok"))
    assert events == [OversizedFrame(9, 1, 0, length), Frame(11, 1, 0, b"ok")]


def test_decoder_rejects_garbage_and_stays_poisoned() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="reserved length byte"):
        decoder.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(1, 1, b""))


def test_request_envelope_matches_go_field_numbers() -> None:
    data = encode_request("s", "m", b"p", metadata={"k": "v"}, timeout_nano=1)
    assert data == bytes.fromhex("0a017312016d1a017020012a060a016b120176")
    request = decode_request(data)
    assert (request.service, request.method, request.payload, request.timeout_nano) == ("s", "m", b"p", 1)


def test_metadata_keeps_every_value_in_order() -> None:
    data = encode_request("s", "m", b"", metadata={"a": ["1", "2"], "B": "3"})
    request = decode_request(data)
    assert [(kv.key, kv.value) for kv in request.metadata] == [("a", "1"), ("a", "2"), ("B", "3")]
    assert metadata_from_pairs(request.metadata) == {"a": ["1", "2"], "B": ["3"]}


def test_request_over_the_limit_is_refused_before_sending() -> None:
    with pytest.raises(TTRPCError) as info:
        encode_request("s", "m", b"x" * MAX_MESSAGE_LENGTH)
    assert info.value.code == Code.RESOURCE_EXHAUSTED


def test_undecodable_request_is_invalid_argument() -> None:
    with pytest.raises(TTRPCError) as info:
        decode_request(b"\xff\xff\xff")
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message.startswith("unmarshal request error")


def test_ok_response_carries_an_explicit_status_like_go() -> None:
    assert encode_response(Code.OK) == b"\x0a\x00"
    payload = wrappers_pb2.StringValue(value="x").SerializeToString()
    assert decode_response(encode_response(Code.OK, payload=payload)) == payload


def test_response_without_status_is_ok() -> None:
    assert decode_response(ttrpc_pb2.Response(payload=b"abc").SerializeToString()) == b"abc"


def test_error_response_raises_with_code_message_and_details() -> None:
    response = ttrpc_pb2.Response()
    response.status.code = Code.NOT_FOUND
    response.status.message = "no such task"
    response.status.details.add().Pack(wrappers_pb2.StringValue(value="d"))
    with pytest.raises(TTRPCError) as info:
        decode_response(response.SerializeToString())
    assert info.value.code == Code.NOT_FOUND
    assert info.value.message == "no such task"
    assert len(info.value.details) == 1
    assert "NOT_FOUND" in str(info.value)


def test_unknown_status_codes_survive() -> None:
    err = TTRPCError(99, "future")
    assert err.code == 99
    assert "99" in str(err)


def test_oversize_response_is_replaced_by_resource_exhausted() -> None:
    with pytest.raises(TTRPCError) as info:
        decode_response(encode_response(Code.OK, payload=b"x" * MAX_MESSAGE_LENGTH))
    assert info.value.code == Code.RESOURCE_EXHAUSTED


def test_client_stream_ids_are_odd_and_increasing() -> None:
    ids = ClientStreamIds()
    assert [ids.allocate() for _ in range(4)] == [1, 3, 5, 7]
    ids._next = (1 << 32) - 1
    assert ids.allocate() == (1 << 32) - 1
    with pytest.raises(TTRPCConnectionError, match="exhausted"):
        ids.allocate()


def test_server_stream_rules_follow_go() -> None:
    check = ServerStreamCheck()
    assert check.check(2, is_request=True) == "StreamID must be odd for client initiated streams"
    assert check.check(3, is_request=True) is None
    assert check.check(3, is_request=True) == "StreamID cannot be re-used and must increment"
    assert check.check(1, is_request=True) == "StreamID cannot be re-used and must increment"
    assert check.check(1, is_request=False) is None  # data frames are checked elsewhere
    assert check.check(9, is_request=True) is None  # gaps are fine


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TTRPCError(Code.ABORTED, "x"), Code.ABORTED),
        (FileNotFoundError("x"), Code.NOT_FOUND),
        (FileExistsError("x"), Code.ALREADY_EXISTS),
        (PermissionError("x"), Code.PERMISSION_DENIED),
        (EOFError("x"), Code.OUT_OF_RANGE),
        (TimeoutError("x"), Code.DEADLINE_EXCEEDED),
        (ValueError("x"), Code.UNKNOWN),
        (RuntimeError(), Code.UNKNOWN),
    ],
)
def test_default_error_to_status(exc: BaseException, code: Code) -> None:
    got_code, message = default_error_to_status(exc)
    assert got_code == code
    assert message
