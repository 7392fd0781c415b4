"""Reading a blob while it downloads, so that a pull unpacks layers as they arrive.

A :class:`Download` is shared between the coroutine that writes a blob into the content store
and a worker thread that applies it: the writer reports each append, the reader
(:class:`FollowReader`) reads the ingest file up to what has been written and waits at its end
until more arrives or the download finishes. The file is renamed into the store at commit; the
reader's open descriptor stays valid, so it reads on to the end. The reader sees the end of the
data only once the download has been committed, digest verified; a failed download fails the
read.
"""

from __future__ import annotations

import io
import os
import threading
from typing import TYPE_CHECKING

from pycontainerd.errdefs import Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pycontainerd.core.images import Descriptor

START_TIMEOUT = 600.0


class Download:
    """One blob on its way into the content store."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self.written = 0
        self.path: Path | None = None
        self.done = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def started(self, path: Path | None, offset: int) -> None:
        """The bytes go to ``path`` (None: the store already holds the blob), ``offset`` there already."""
        with self._cond:
            self.path, self.written = path, offset
            self._cond.notify_all()

    def advance(self, count: int) -> None:
        """``count`` more bytes were appended."""
        with self._cond:
            self.written += count
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """The blob is committed (or failed with ``error``)."""
        with self._cond:
            self.done, self.error = True, error
            self._cond.notify_all()

    def wait(self, predicate: object, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)  # type: ignore[arg-type]


class FollowReader(io.RawIOBase):
    """A raw file reading a :class:`Download` as it grows (blocking; for a worker thread).

    ``blob_path`` says where the committed blob lives (asked only once it must exist), for
    downloads that wrote nothing or were committed before the reader opened them.
    """

    def __init__(self, download: Download, blob_path: Callable[[], Path]) -> None:
        super().__init__()
        self._download = download
        if not download.wait(lambda: download.path is not None or download.done, START_TIMEOUT):
            raise Unavailable(f"download of {download.desc.digest} did not start")
        if download.error is not None:
            raise download.error
        self._fd = self._open(download, blob_path)
        self._pos = 0

    @staticmethod
    def _open(download: Download, blob_path: Callable[[], Path]) -> int:
        if download.path is not None:
            try:
                return os.open(download.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                # Committed (renamed into the store) before we got here: read the blob.
                download.wait(lambda: download.done)
                if download.error is not None:
                    raise download.error from None
                download.path = None
        return os.open(blob_path(), os.O_RDONLY | os.O_CLOEXEC)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        d = self._download
        want = len(buffer)
        if d.path is not None:
            d.wait(lambda: d.written > self._pos or d.done)
            if d.error is not None:
                raise d.error
            if d.written > self._pos:
                want = min(want, d.written - self._pos)
        # Past what was written only when there is nothing more to come: a committed
        # download or a blob the store held already; there the read stops at the file's end.
        chunk = os.pread(self._fd, want, self._pos)
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
