"""RFC 6455 framing, without sockets."""

from __future__ import annotations

import pytest

from pycontainerd.cri.streaming.ws_frames import (
    CloseCode,
    FrameParser,
    Message,
    Opcode,
    WebSocketProtocolError,
    accept_token,
    close_payload,
    encode_frame,
    valid_key,
)


def parse(data: bytes, *, server: bool = True, max_message: int = 1 << 20) -> list[Message]:
    parser = FrameParser(server=server, max_message=max_message)
    out = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        while (message := parser.next_message()) is not None:
            out.append(message)
    return out


def test_accept_token_matches_the_rfc_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert valid_key("dGhlIHNhbXBsZSBub25jZQ==") and not valid_key("short") and not valid_key("!!!!")


def test_rfc_examples() -> None:
    # RFC 6455 section 5.7: unmasked and masked "Hello", a fragmented text message, a ping.
    assert parse(bytes.fromhex("810548656c6c6f"), server=False) == [Message(Opcode.TEXT, b"Hello")]
    assert parse(bytes.fromhex("818537fa213d7f9f4d5158")) == [Message(Opcode.TEXT, b"Hello")]
    fragmented = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert parse(fragmented, server=False) == [Message(Opcode.TEXT, b"Hello")]
    assert encode_frame(Opcode.TEXT, b"Hello", mask=False) == bytes.fromhex("810548656c6c6f")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("mask", [True, False])
def test_round_trip_every_length_encoding(size: int, mask: bool) -> None:
    payload = bytes(i % 251 for i in range(size))
    parser = FrameParser(server=mask)
    parser.feed(encode_frame(Opcode.BINARY, payload, mask=mask))
    assert parser.next_message() == Message(Opcode.BINARY, payload)
    assert parser.next_message() is None


def test_control_frames_between_fragments() -> None:
    wire = (
        encode_frame(Opcode.BINARY, b"ab", mask=True, fin=False)
        + encode_frame(Opcode.PING, b"p", mask=True)
        + encode_frame(Opcode.CONTINUATION, b"cd", mask=True)
        + encode_frame(Opcode.CLOSE, close_payload(CloseCode.NORMAL, "bye"), mask=True)
    )
    messages = parse(wire)
    assert messages[:2] == [Message(Opcode.PING, b"p"), Message(Opcode.BINARY, b"abcd")]
    assert messages[2].opcode == Opcode.CLOSE and messages[2].close_code() == 1000


@pytest.mark.parametrize(
    ("wire", "server", "code"),
    [
        (encode_frame(Opcode.BINARY, b"x", mask=False), True, CloseCode.PROTOCOL_ERROR),  # client must mask
        (encode_frame(Opcode.BINARY, b"x", mask=True), False, CloseCode.PROTOCOL_ERROR),  # server must not
        (b"\xc2\x00", False, CloseCode.PROTOCOL_ERROR),  # RSV1 without an extension
        (b"\x83\x00", False, CloseCode.PROTOCOL_ERROR),  # reserved opcode
        (encode_frame(Opcode.PING, bytes(126), mask=False), False, CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.PING, b"", mask=False, fin=False), False, CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.CONTINUATION, b"x", mask=False), False, CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.TEXT, b"x", mask=False, fin=False) * 2, False, CloseCode.PROTOCOL_ERROR),
        (encode_frame(Opcode.CLOSE, b"\x03", mask=False), False, CloseCode.PROTOCOL_ERROR),
        (b"\x82\x7f\x80" + bytes(7), False, CloseCode.PROTOCOL_ERROR),  # 64-bit length with the top bit
        (encode_frame(Opcode.BINARY, bytes(2000), mask=False), False, CloseCode.TOO_BIG),
    ],
)
def test_protocol_errors(wire: bytes, server: bool, code: int) -> None:
    with pytest.raises(WebSocketProtocolError) as failed:
        parse(wire, server=server, max_message=1000)
    assert failed.value.code == code


def test_message_size_limit_spans_fragments() -> None:
    wire = encode_frame(Opcode.BINARY, bytes(600), mask=False, fin=False) + encode_frame(
        Opcode.CONTINUATION, bytes(600), mask=False
    )
    with pytest.raises(WebSocketProtocolError, match="too large"):
        parse(wire, server=False, max_message=1000)
