"""The SPDY session state machine: two real sessions joined by a list of bytes (no sockets)."""

from __future__ import annotations

import pytest

from pycontainerd.cri.streaming.spdy_events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReplied,
    StreamReset,
    WindowOpened,
)
from pycontainerd.cri.streaming.spdy_frames import (
    Data,
    FrameReader,
    Ping,
    RstStatus,
    RstStream,
    SettingId,
    Settings,
    SynStream,
    WindowUpdate,
    encode_frame,
)
from pycontainerd.cri.streaming.spdy_headers import HeaderCompressor
from pycontainerd.cri.streaming.spdy_session import DEFAULT_WINDOW, MAX_DATA_CHUNK, SpdySession


class Pair:
    """A client and a server session; :meth:`to_server` / :meth:`to_client` carry queued bytes across."""

    def __init__(self, *, client_flow_control: bool = True) -> None:
        self.client = SpdySession(client=True, enforce_peer_windows=client_flow_control, announce=client_flow_control)
        self.server = SpdySession(client=False)

    def to_server(self) -> list[Event]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[Event]:
        return self.client.receive_data(self.server.data_to_send())


def frames(data: bytes) -> list[object]:
    reader = FrameReader()
    reader.feed(data)
    return list(iter(reader.next_frame, None))


def send_everything(sender: SpdySession, stream_id: int, payload: bytes) -> int:
    sent = 0
    while sent < len(payload) and (n := sender.send_data(stream_id, payload[sent:])):
        sent += n
    return sent


def test_stream_lifecycle() -> None:
    pair = Pair()
    sid = pair.client.open_stream({"streamtype": "stdin"})
    assert sid == 1 and pair.client.open_stream({"streamtype": "stdout"}) == 3
    assert pair.to_server() == [
        StreamOpened(1, {"streamtype": "stdin"}, False),
        StreamOpened(3, {"streamtype": "stdout"}, False),
    ]
    pair.server.reply(1)
    assert pair.to_client() == [StreamReplied(1, {})]
    pair.client.send_data(1, b"abc", fin=True)
    assert pair.to_server() == [DataReceived(1, b"abc"), StreamEnded(1)]
    assert pair.server.is_open(1) and not pair.server.remote_open(1) and pair.server.local_open(1)
    pair.server.end_stream(1)
    assert not pair.server.is_open(1)  # closed both ways: forgotten
    assert pair.to_client() == [StreamEnded(1)]
    assert not pair.client.is_open(1)
    with pytest.raises(ConnectionResetError):
        pair.client.send_data(1, b"late")


def test_window_exhaustion_and_updates_on_streams_and_session() -> None:
    pair = Pair()
    pair.to_server()  # the client's SETTINGS: the server now enforces the client's windows
    sid = pair.client.open_stream({})
    pair.to_server()
    pair.server.reply(sid)
    pair.to_client()
    payload = bytes(3 * DEFAULT_WINDOW)
    assert send_everything(pair.server, sid, payload) == DEFAULT_WINDOW
    assert pair.server.capacity(sid) == 0
    received = pair.to_client()
    assert sum(len(e.data) for e in received if isinstance(e, DataReceived)) == DEFAULT_WINDOW
    pair.client.acknowledge(sid, DEFAULT_WINDOW // 2 - 1)
    assert pair.client.data_to_send() == b""  # below half a window: no update yet
    pair.client.acknowledge(sid, DEFAULT_WINDOW // 2 + 1)
    updates = [f for f in frames(pair.client.data_to_send()) if isinstance(f, WindowUpdate)]
    assert updates == [WindowUpdate(sid, DEFAULT_WINDOW), WindowUpdate(0, DEFAULT_WINDOW)]
    events = pair.server.receive_data(b"".join(encode_frame(u, HeaderCompressor()) for u in updates))
    assert events == [WindowOpened(sid), WindowOpened(0)]
    assert pair.server.capacity(sid) == MAX_DATA_CHUNK


def test_session_window_limits_all_streams_together() -> None:
    pair = Pair()
    pair.to_server()
    a, b = pair.client.open_stream({}), pair.client.open_stream({})
    pair.to_server()
    pair.server.reply(a)
    pair.server.reply(b)
    half = bytes(DEFAULT_WINDOW // 2)
    assert send_everything(pair.server, a, half) == len(half)
    assert send_everything(pair.server, b, bytes(DEFAULT_WINDOW)) == len(half)  # the session window ran out first


def test_peer_without_flow_control_is_not_waited_for() -> None:
    # A spdystream client never sends SETTINGS or WINDOW_UPDATE: the server must not stall at 64 KiB.
    pair = Pair(client_flow_control=False)
    sid = pair.client.open_stream({})
    pair.to_server()
    pair.server.reply(sid)
    assert not pair.server.enforcing
    assert send_everything(pair.server, sid, bytes(4 * DEFAULT_WINDOW)) == 4 * DEFAULT_WINDOW
    # ...and its overruns of our windows are tolerated, not reset.
    assert send_everything(pair.client, sid, bytes(4 * DEFAULT_WINDOW)) == 4 * DEFAULT_WINDOW
    events = pair.to_server()
    assert not [e for e in events if isinstance(e, StreamReset)]
    assert pair.server.frames_received["WindowUpdate"] == 0


def test_flow_controlled_peer_that_overruns_is_reset() -> None:
    pair = Pair()
    pair.client.open_stream({})
    pair.to_server()
    pair.server.data_to_send()
    overrun = encode_frame(Data(1, bytes(DEFAULT_WINDOW + 1)), HeaderCompressor())
    # The session window overflows together with the stream's; the stream error wins.
    events = pair.server.receive_data(overrun)
    assert StreamReset(1, RstStatus.FLOW_CONTROL_ERROR) in events
    assert RstStream(1, RstStatus.FLOW_CONTROL_ERROR) in frames(pair.server.data_to_send())


def test_initial_window_setting_applies_to_open_streams() -> None:
    pair = Pair()
    sid = pair.client.open_stream({})
    pair.to_server()
    pair.server.reply(sid)
    pair.server.receive_data(encode_frame(Settings(((SettingId.INITIAL_WINDOW_SIZE, 1000, 0),)), HeaderCompressor()))
    assert pair.server.capacity(sid) == 1000


def test_pings_are_echoed_and_acknowledged() -> None:
    pair = Pair()
    ping_id = pair.client.ping()
    assert pair.to_server() == []
    echo = pair.server.data_to_send()
    assert Ping(ping_id) in frames(echo)  # the server answers the client's (odd) ping
    assert PingAcknowledged(ping_id) in pair.client.receive_data(echo)


def test_goaway_and_reset() -> None:
    pair = Pair()
    sid = pair.client.open_stream({})
    pair.to_server()
    pair.server.reset(sid, RstStatus.REFUSED_STREAM)
    pair.server.go_away()
    assert pair.to_client() == [StreamReset(sid, RstStatus.REFUSED_STREAM), GoAwayReceived(sid, 0)]
    with pytest.raises(RuntimeError):
        pair.client.open_stream({})
    crossing = Pair()
    crossing.server.go_away()
    crossing.client.open_stream({})  # sent before the client saw the GOAWAY
    assert crossing.to_server() == []  # ignored


def test_stream_ids_must_grow_and_have_the_peers_parity() -> None:
    server = SpdySession(client=False)
    server.data_to_send()
    compressor = HeaderCompressor()
    server.receive_data(encode_frame(SynStream(5, {}), compressor))
    assert server.receive_data(encode_frame(SynStream(3, {}), compressor)) == []
    assert server.receive_data(encode_frame(SynStream(6, {}), compressor)) == []
    assert frames(server.data_to_send()) == [
        RstStream(3, RstStatus.PROTOCOL_ERROR),
        RstStream(6, RstStatus.PROTOCOL_ERROR),
    ]


def test_data_for_a_stream_never_opened_is_invalid() -> None:
    server = SpdySession(client=False)
    server.data_to_send()
    assert server.receive_data(encode_frame(Data(9, b"x"), HeaderCompressor())) == []
    assert frames(server.data_to_send()) == [RstStream(9, RstStatus.INVALID_STREAM)]
