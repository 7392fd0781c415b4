"""The CRI container log format: one record per line, ``<time> <stream> <tag> <content>``.

``time`` is RFC 3339 with nanoseconds in UTC, ``stream`` is ``stdout`` or ``stderr``, ``tag``
is ``F`` for a full line or ``P`` for a partial one (a line longer than the configured maximum
is cut into ``P`` records followed by an ``F`` record; the last bytes before EOF without a
newline are written as ``F``). kubelet's log reader parses exactly this.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FULL = b"F"
PARTIAL = b"P"


def timestamp(ns: int | None = None) -> bytes:
    """``2016-10-06T00:17:09.669794202Z`` for ``ns`` nanoseconds since the epoch (now by default)."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z").encode()


def record(stream: bytes, tag: bytes, content: bytes, ns: int | None = None) -> bytes:
    """One log record, newline included."""
    return b"%s %s %s %s\n" % (timestamp(ns), stream, tag, content)


class LineSplitter:
    """Turns a byte stream into log records: buffers partial lines, cuts over-long ones."""

    def __init__(self, stream: str, max_line: int) -> None:
        self._stream = stream.encode()
        self._max = max_line if max_line > 0 else 0
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Records for the complete lines in ``data`` (plus cut pieces of over-long ones)."""
        out: list[bytes] = []
        buf = self._pending + data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            if line.endswith(b"\r"):
                line = line[:-1]
            out.extend(self._emit(line, final=True))
            start = end + 1
        rest = buf[start:]
        while self._max and len(rest) >= self._max:
            out.append(record(self._stream, PARTIAL, rest[: self._max]))
            rest = rest[self._max :]
        self._pending = rest
        return out

    def _emit(self, line: bytes, *, final: bool) -> list[bytes]:
        out: list[bytes] = []
        while self._max and len(line) > self._max:
            out.append(record(self._stream, PARTIAL, line[: self._max]))
            line = line[self._max :]
        out.append(record(self._stream, FULL if final else PARTIAL, line))
        return out

    def close(self) -> list[bytes]:
        """The record for bytes left without a newline at EOF (tagged full)."""
        if not self._pending:
            return []
        line, self._pending = self._pending, b""
        return self._emit(line, final=True)


class LogFile:
    """The container's log file, appended to by both streams; reopened on kubelet's request."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        if path:
            self.reopen()

    def reopen(self) -> None:
        """Close and open ``path`` again (kubelet renamed the file to rotate it)."""
        if not self.path:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)

    def write(self, records: list[bytes]) -> None:
        """Append records (a no-op without a log path)."""
        if self._fd < 0 or not records:
            return
        data = b"".join(records)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
