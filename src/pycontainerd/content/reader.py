"""Open a committed blob of any content backend as a buffered binary stream.

The local store can hand out a file path (the fast path: the kernel reads the file). A backend
served by another process (``content/proxy.py``) has no path: it may offer ``reader(digest,
offset)`` (one streaming read of the whole blob), and any backend at all can be read chunk by
chunk through ``read_at``. Callers that open blobs (unpack, push, export, checkpoint restore,
the walking differ) go through :func:`open_blob` and never ask for a path themselves.
"""

from __future__ import annotations

import io
from typing import IO, Any

from pycontainerd.errdefs import InvalidArgument

READ_CHUNK = 1 << 20


class BlobReader(io.RawIOBase):
    """A blob read through ``backend.read_at``, one chunk per call (seekable)."""

    def __init__(self, backend: Any, digest: str, offset: int = 0, chunk: int = READ_CHUNK) -> None:
        super().__init__()
        if offset < 0:
            raise InvalidArgument(f"negative read offset {offset}")
        self._backend = backend
        self._digest = digest
        self._pos = offset
        self._chunk = chunk
        self._size: int | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        data = self._backend.read_at(self._digest, self._pos, min(len(view), self._chunk))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            if self._size is None:
                self._size = int(self._backend.info(self._digest).size)
            offset += self._size
        if offset < 0:
            raise InvalidArgument(f"negative seek position {offset}")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos


def open_blob(backend: Any, digest: str, offset: int = 0, buffering: int = READ_CHUNK) -> IO[bytes]:
    """The bytes of blob ``digest`` from ``offset``, as a buffered reader (offers ``peek``).

    Blocking: call it, and read from the result, in a worker thread.

    Raises:
        NotFound: the backend does not hold the blob.
        InvalidArgument: malformed digest or negative offset.
    """
    path = getattr(backend, "path", None)
    if callable(path):
        fh = open(path(digest), "rb", buffering=buffering)  # noqa: SIM115 - returned to the caller
        if offset:
            fh.seek(offset)
        return fh
    reader = getattr(backend, "reader", None)
    if callable(reader):
        stream: IO[bytes] = reader(digest, offset)
        return stream
    return io.BufferedReader(BlobReader(backend, digest, offset), buffering)
