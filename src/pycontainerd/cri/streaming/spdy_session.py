"""SPDY/3.1 session state, without I/O: streams, their half-closed states, and flow control.

Feed received bytes to :meth:`SpdySession.receive_data`, which returns events; call the
action methods (``open_stream``, ``reply``, ``send_data``...) and write what
:meth:`SpdySession.data_to_send` returns to the socket. Both roles share the code; clients
open odd stream ids, servers even ones.

Flow control. SPDY/3.1 gives each stream and the session a 64 KiB window per direction that the
receiver reopens with WINDOW_UPDATE as it consumes data. The Kubernetes clients (kubectl,
crictl, kubelet: all built on ``moby/spdystream``) implement none of it: they send no
WINDOW_UPDATE, ignore ours, and ignore windows when sending (spdystream issue #2). A server that
waited for window updates would stall every real client after 64 KiB. So:

- Receiving, this session always keeps the books and sends WINDOW_UPDATE as the application
  reports consumption (:meth:`SpdySession.acknowledge`); spdystream ignores them harmlessly.
  Overruns are only punished (RST_STREAM FLOW_CONTROL_ERROR) once the peer has shown it
  implements flow control; otherwise the driver bounds memory by not reading the socket.
- Sending, the peer's windows are enforced once the peer has shown it implements flow control
  by sending SETTINGS or WINDOW_UPDATE (``enforce_peer_windows=None``, the default), or always /
  never when the caller says so. A compliant client announces itself with SETTINGS before its
  first SYN_STREAM, so the decision is made before any stream carries data.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

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
    Frame,
    FrameReader,
    GoAway,
    GoAwayStatus,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    SettingId,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    WindowUpdate,
    encode_frame,
)
from pycontainerd.cri.streaming.spdy_headers import HeaderCompressor

if TYPE_CHECKING:
    from pycontainerd.cri.streaming.spdy_headers import Headers

DEFAULT_WINDOW = 64 * 1024
"""Initial stream and session window of SPDY/3.1."""

MAX_WINDOW = (1 << 31) - 1
MAX_DATA_CHUNK = 16 * 1024
"""Largest DATA payload this side sends in one frame."""


class _Stream:
    __slots__ = ("id", "local_open", "recv_window", "remote_open", "send_window", "unacked")

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.local_open = True
        self.remote_open = True
        self.send_window = send_window
        self.recv_window = DEFAULT_WINDOW
        self.unacked = 0


class SpdySession:
    """One side of a SPDY/3.1 connection.

    Args:
        client: True for the side that sent the HTTP upgrade request.
        enforce_peer_windows: Whether sending respects the peer's windows; None detects it
            (see the module docstring).
        announce: Whether this side implements flow control itself: it then opens with a SETTINGS
            frame and sends WINDOW_UPDATE as data is consumed. False imitates spdystream.
    """

    def __init__(self, *, client: bool, enforce_peer_windows: bool | None = None, announce: bool = True) -> None:
        self.client = client
        self._enforce = enforce_peer_windows
        self._peer_flow_control = False
        self._announce = announce
        self._reader = FrameReader()
        self._compressor = HeaderCompressor()
        self._out = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if client else 2
        self._next_ping = 1 if client else 2
        self._last_peer_id = 0
        self._peer_initial_window = DEFAULT_WINDOW
        self._send_session_window = DEFAULT_WINDOW
        self._recv_session_window = DEFAULT_WINDOW
        self._session_unacked = 0
        self.went_away = False
        """Whether this side sent GOAWAY (new peer streams are ignored)."""
        self.peer_went_away = False
        self.frames_received: Counter[str] = Counter()
        """Frames received so far, by frame class name (``"WindowUpdate"``, ``"Data"``...)."""
        if announce:
            self._send(Settings(((SettingId.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW, 0),)))

    # -- received bytes -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Process received bytes; returns the events they complete.

        Raises:
            SpdyProtocolError: The connection is unusable; send :meth:`go_away` and close.
        """
        self._reader.feed(data)
        events: list[Event] = []
        while (frame := self._reader.next_frame()) is not None:
            self._handle(frame, events)
        return events

    @property
    def enforcing(self) -> bool:
        """Whether sending currently respects the peer's windows."""
        return self._peer_flow_control if self._enforce is None else self._enforce

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        self.frames_received[type(frame).__name__] += 1
        match frame:
            case Data(stream_id, data, fin):
                self._on_data(stream_id, data, fin, events)
            case SynStream(stream_id, headers, _assoc, _prio, fin, unidirectional):
                self._on_syn_stream(stream_id, headers, fin, unidirectional, events)
            case SynReply(stream_id, headers, fin):
                if (stream := self._streams.get(stream_id)) is not None and self._is_local(stream_id):
                    events.append(StreamReplied(stream_id, headers))
                    if fin:
                        self._remote_closed(stream, events)
            case HeadersFrame(stream_id, _headers, fin):
                if fin and (stream := self._streams.get(stream_id)) is not None:
                    self._remote_closed(stream, events)
            case RstStream(stream_id, status):
                if self._streams.pop(stream_id, None) is not None:
                    events.append(StreamReset(stream_id, status))
            case Settings() as settings:
                self._peer_flow_control = True
                self._on_settings(settings, events)
            case WindowUpdate(stream_id, delta):
                self._peer_flow_control = True
                self._on_window_update(stream_id, delta, events)
            case Ping(ping_id):
                if ping_id % 2 == self._next_ping % 2:
                    events.append(PingAcknowledged(ping_id))
                else:
                    self._send(frame)
            case GoAway(last_good, status):
                self.peer_went_away = True
                events.append(GoAwayReceived(last_good, status))
            case _:
                pass  # unknown control frames are ignored, as SPDY requires

    def _on_syn_stream(
        self, stream_id: int, headers: Headers, fin: bool, unidirectional: bool, events: list[Event]
    ) -> None:
        if self.went_away:
            return
        if self._is_local(stream_id) or stream_id <= self._last_peer_id:
            self._send(RstStream(stream_id, RstStatus.PROTOCOL_ERROR))
            return
        self._last_peer_id = stream_id
        stream = _Stream(stream_id, self._peer_initial_window)
        stream.local_open = not unidirectional
        self._streams[stream_id] = stream
        events.append(StreamOpened(stream_id, headers, fin))
        if fin:
            self._remote_closed(stream, events)

    def _on_data(self, stream_id: int, data: bytes, fin: bool, events: list[Event]) -> None:
        size = len(data)
        self._recv_session_window -= size
        strict = self._peer_flow_control and self._announce
        stream = self._streams.get(stream_id)
        if stream is None or not stream.remote_open:
            # Data racing a reset, or for a stream that never existed: drop it, keep the session window honest.
            self._check_session_window(strict)
            self.acknowledge(0, size)
            if stream is None and self._never_opened(stream_id):
                self._send(RstStream(stream_id, RstStatus.INVALID_STREAM))
            return
        stream.recv_window -= size
        if stream.recv_window < 0 and strict:
            self.acknowledge(0, size)
            self._abort(stream, RstStatus.FLOW_CONTROL_ERROR, events)
            return
        self._check_session_window(strict)
        if data:
            events.append(DataReceived(stream_id, data))
        if fin:
            self._remote_closed(stream, events)

    def _check_session_window(self, strict: bool) -> None:
        if strict and self._recv_session_window < 0:
            raise SpdyProtocolError("peer overran the session flow-control window")

    def _on_settings(self, settings: Settings, events: list[Event]) -> None:
        window = settings.value(SettingId.INITIAL_WINDOW_SIZE)
        if window is None:
            return
        if window > MAX_WINDOW:
            raise SpdyProtocolError("INITIAL_WINDOW_SIZE above 2^31-1")
        delta, self._peer_initial_window = window - self._peer_initial_window, window
        for stream in self._streams.values():
            stream.send_window += delta
        if delta > 0:
            events.append(WindowOpened(0))

    def _on_window_update(self, stream_id: int, delta: int, events: list[Event]) -> None:
        if stream_id == 0:
            self._send_session_window += delta
            if self._send_session_window > MAX_WINDOW:
                raise SpdyProtocolError("session window above 2^31-1")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += delta
            if stream.send_window > MAX_WINDOW:
                self._abort(stream, RstStatus.FLOW_CONTROL_ERROR, events)
                return
        events.append(WindowOpened(stream_id))

    # -- actions --------------------------------------------------------------------------

    def open_stream(self, headers: Headers, *, fin: bool = False, priority: int = 0) -> int:
        """Send SYN_STREAM; returns the new stream's id."""
        if self.went_away or self.peer_went_away:
            raise RuntimeError("the session is going away")
        stream_id, self._next_id = self._next_id, self._next_id + 2
        stream = _Stream(stream_id, self._peer_initial_window)
        self._streams[stream_id] = stream
        self._send(SynStream(stream_id, headers, priority=priority, fin=fin))
        if fin:
            stream.local_open = False
        return stream_id

    def reply(self, stream_id: int, headers: Headers | None = None, *, fin: bool = False) -> None:
        """Accept a peer stream with SYN_REPLY."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._send(SynReply(stream_id, headers or {}, fin))
        if fin:
            self._local_closed(stream)

    def reset(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        """Abort a stream with RST_STREAM (no-op for streams already gone)."""
        if self._streams.pop(stream_id, None) is not None:
            self._send(RstStream(stream_id, status))

    def capacity(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` would accept on ``stream_id`` now (0 if it cannot send)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return 0
        if not self.enforcing:
            return MAX_DATA_CHUNK
        return max(0, min(stream.send_window, self._send_session_window, MAX_DATA_CHUNK))

    def send_data(self, stream_id: int, data: bytes | memoryview, *, fin: bool = False) -> int:
        """Send as much of ``data`` as the windows allow (one frame); returns the bytes sent.

        ``fin`` applies only if all of ``data`` fits. Raises ``ConnectionResetError`` when the stream
        cannot send any more (reset, or this side already sent FIN).
        """
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            raise ConnectionResetError(f"SPDY stream {stream_id} is closed for sending")
        size = min(len(data), self.capacity(stream_id))
        if not size and data:
            return 0
        last = fin and size == len(data)
        self._send(Data(stream_id, bytes(data[:size]), last))
        stream.send_window -= size
        self._send_session_window -= size
        if last:
            self._local_closed(stream)
        return size

    def end_stream(self, stream_id: int) -> None:
        """Half-close this side of ``stream_id`` with an empty FIN (windows do not apply)."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.local_open:
            self._send(Data(stream_id, b"", True))
            self._local_closed(stream)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of ``stream_id`` (0: only the session window).

        A WINDOW_UPDATE goes out once half a window is consumed, per stream and for the session.
        """
        if size <= 0:
            return
        if stream_id:
            self._session_unacked += size
            stream = self._streams.get(stream_id)
            if stream is not None and stream.remote_open:
                stream.unacked += size
                if stream.unacked >= DEFAULT_WINDOW // 2:
                    self._window_update(stream_id, stream.unacked)
                    stream.recv_window += stream.unacked
                    stream.unacked = 0
        else:
            self._session_unacked += size
        if self._session_unacked >= DEFAULT_WINDOW // 2:
            self._window_update(0, self._session_unacked)
            self._recv_session_window += self._session_unacked
            self._session_unacked = 0

    def ping(self) -> int:
        """Send a PING; its echo arrives as :class:`PingAcknowledged`."""
        ping_id, self._next_ping = self._next_ping, self._next_ping + 2
        self._send(Ping(ping_id))
        return ping_id

    def go_away(self, status: int = GoAwayStatus.OK) -> None:
        """Send GOAWAY naming the last peer stream accepted (once)."""
        if not self.went_away:
            self.went_away = True
            self._send(GoAway(self._last_peer_id, status))

    def data_to_send(self) -> bytes:
        """Bytes queued for the socket since the last call."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def is_open(self, stream_id: int) -> bool:
        """Whether ``stream_id`` still exists (not reset, not closed both ways)."""
        return stream_id in self._streams

    def local_open(self, stream_id: int) -> bool:
        """Whether this side may still send on ``stream_id``."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.local_open

    def remote_open(self, stream_id: int) -> bool:
        """Whether the peer may still send on ``stream_id``."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.remote_open

    @property
    def stream_ids(self) -> list[int]:
        """Ids of the streams that still exist."""
        return list(self._streams)

    # -- internals ------------------------------------------------------------------------

    def _send(self, frame: Frame) -> None:
        self._out += encode_frame(frame, self._compressor)

    def _window_update(self, stream_id: int, delta: int) -> None:
        if self._announce:
            self._send(WindowUpdate(stream_id, delta))

    def _is_local(self, stream_id: int) -> bool:
        return stream_id % 2 == (1 if self.client else 0)

    def _never_opened(self, stream_id: int) -> bool:
        return stream_id >= self._next_id if self._is_local(stream_id) else stream_id > self._last_peer_id

    def _abort(self, stream: _Stream, status: int, events: list[Event]) -> None:
        self._streams.pop(stream.id, None)
        self._send(RstStream(stream.id, status))
        events.append(StreamReset(stream.id, status))

    def _remote_closed(self, stream: _Stream, events: list[Event]) -> None:
        if stream.remote_open:
            stream.remote_open = False
            events.append(StreamEnded(stream.id))
        if not stream.local_open:
            self._streams.pop(stream.id, None)

    def _local_closed(self, stream: _Stream) -> None:
        stream.local_open = False
        if not stream.remote_open:
            self._streams.pop(stream.id, None)
