"""SPDY/3.1 framing and header compression, byte by byte."""

from __future__ import annotations

import struct
import zlib

import pytest

from pycontainerd.cri.streaming.spdy_frames import (
    Data,
    Frame,
    FrameReader,
    GoAway,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    SettingId,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    UnknownControl,
    WindowUpdate,
    encode_frame,
)
from pycontainerd.cri.streaming.spdy_headers import (
    HEADER_DICTIONARY,
    HeaderCompressor,
    HeaderDecompressor,
    decode_header_block,
    encode_header_block,
)

FRAMES: list[Frame] = [
    SynStream(1, {"streamtype": "error", "port": "8080", "requestid": "0"}, priority=3),
    SynStream(3, {"streamtype": "stdin"}, fin=True, unidirectional=True),
    SynReply(1, {}),
    SynReply(3, {"x": "a\x00b"}, fin=True),
    HeadersFrame(5, {"k": "v"}, fin=True),
    RstStream(7, RstStatus.FLOW_CONTROL_ERROR),
    Settings(((SettingId.INITIAL_WINDOW_SIZE, 1 << 20, 0), (SettingId.MAX_CONCURRENT_STREAMS, 100, 1)), clear=True),
    Ping(2),
    GoAway(9, 1),
    WindowUpdate(0, 32768),
    WindowUpdate(1, (1 << 31) - 1),
    Data(1, b"hello"),
    Data(3, b"", fin=True),
    Data(5, bytes(100_000)),
    UnknownControl(10, 0, b"credential"),
]


def test_dictionary_is_the_spdy3_one() -> None:
    # Structure from SPDY/3 section 2.6.10.1: length-prefixed names, then a text tail.
    assert HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert len(HEADER_DICTIONARY) == 1423
    assert zlib.adler32(HEADER_DICTIONARY) == 0xE3C6A7C2  # the dictionary id SPDY/3 implementations check
    # The real check is kubectl decoding our header blocks: tests/unit/cri/streaming/test_referees.py.


def test_every_frame_round_trips_fed_one_byte_at_a_time() -> None:
    compressor, reader = HeaderCompressor(), FrameReader()
    wire = b"".join(encode_frame(frame, compressor) for frame in FRAMES)
    decoded = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        while (frame := reader.next_frame()) is not None:
            decoded.append(frame)
    assert decoded == FRAMES


def test_control_frame_layout() -> None:
    wire = encode_frame(RstStream(5, RstStatus.CANCEL), HeaderCompressor())
    assert wire == bytes.fromhex("8003 0003 00000008 00000005 00000005".replace(" ", ""))
    assert encode_frame(Data(3, b"ab", fin=True), HeaderCompressor()) == bytes.fromhex(
        "00000003 01000002 6162".replace(" ", "")
    )


def test_header_blocks_share_one_zlib_stream() -> None:
    compressor, decompressor = HeaderCompressor(), HeaderDecompressor()
    headers = {"streamtype": "stdout", "requestid": "42", "port": "8080"}
    first = compressor.compress(headers)
    second = compressor.compress(headers)
    # zlib header with FDICT set and the dictionary's Adler-32, as Go's NewWriterLevelDict writes it.
    assert first[0] & 0x0F == 8 and first[1] & 0x20
    assert struct.unpack(">I", first[2:6])[0] == zlib.adler32(HEADER_DICTIONARY)
    assert len(second) < len(first) // 2  # the repeat is a back-reference into the shared window
    assert decompressor.decompress(first) == headers
    assert decompressor.decompress(second) == headers
    with pytest.raises(SpdyProtocolError):
        HeaderDecompressor().decompress(second)  # a block is meaningless out of its stream


def test_header_block_encoding() -> None:
    raw = encode_header_block({"StreamType": "error"})
    assert raw == b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error"
    assert decode_header_block(raw) == {"streamtype": "error"}


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x01\x00\x00\x00\x01A\x00\x00\x00\x00",  # uppercase name
        b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",  # empty name
        b"\x00\x00\x00\x02" + 2 * b"\x00\x00\x00\x01a\x00\x00\x00\x00",  # repeated name
        b"\x00\x00\x00\x01\x00\x00\x00\x09a",  # truncated
        b"\x00\x00\x00\x00extra",  # trailing bytes
    ],
)
def test_bad_header_blocks(raw: bytes) -> None:
    with pytest.raises(SpdyProtocolError):
        decode_header_block(raw)


def test_header_bomb_is_refused() -> None:
    compressor = zlib.compressobj(zdict=HEADER_DICTIONARY)
    bomb = compressor.compress(b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01a" + struct.pack(">I", 1 << 22) + bytes(1 << 22))
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(SpdyProtocolError, match="too large"):
        HeaderDecompressor().decompress(bomb)


@pytest.mark.parametrize(
    "wire",
    [
        bytes.fromhex("80020003000000080000000100000001"),  # SPDY/2
        bytes.fromhex("800300030000000400000001"),  # short RST_STREAM
        bytes.fromhex("80030003000000080000000000000001"),  # RST_STREAM on stream 0
        bytes.fromhex("80030004000000080000000200000000"),  # SETTINGS count and length disagree
        bytes.fromhex("80030006000000080000000100000000"),  # long PING
    ],
)
def test_malformed_frames(wire: bytes) -> None:
    reader = FrameReader()
    reader.feed(wire)
    with pytest.raises(SpdyProtocolError):
        reader.next_frame()


def test_settings_value_lookup() -> None:
    settings = Settings(((SettingId.INITIAL_WINDOW_SIZE, 10, 0), (SettingId.INITIAL_WINDOW_SIZE, 20, 0)))
    assert settings.value(SettingId.INITIAL_WINDOW_SIZE) == 20
    assert settings.value(SettingId.ROUND_TRIP_TIME) is None
