"""Streaming decompression by media type (gzip via ISA-L when available, zstd, none)."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from typing import IO, TYPE_CHECKING, Protocol, cast

from pycontainerd.errdefs import InvalidArgument, Unimplemented

if TYPE_CHECKING:
    from typing_extensions import Buffer

try:  # ISA-L inflates 2-2.5x faster than zlib (measured: 1.2-1.35 GB/s vs 546 MB/s)
    from isal import igzip as _gzip
    from isal import isal_zlib as _isal_zlib

    # What inflating corrupt data raises (the stub types ISA-L's error class as an instance).
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast("type[Exception]", _isal_zlib.error))
except ImportError:  # pragma: no cover - isal is a declared dependency
    import gzip as _gzip  # type: ignore[no-redef]

    _INFLATE_ERRORS = (zlib.error,)

MEDIA_TYPES_GZIP = {
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
MEDIA_TYPES_ZSTD = {"application/vnd.oci.image.layer.v1.tar+zstd"}
MEDIA_TYPES_PLAIN = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
}
UNCOMPRESSED_LAYER = "application/vnd.oci.image.layer.v1.tar"


class HashingReader:
    """Wraps a binary stream, hashing (sha256) and counting what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self.count += len(data)
        return data

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer)
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read to the end (tar streams may stop before trailing padding)."""
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        """``sha256:<hex>`` of everything read so far."""
        return "sha256:" + self._hash.hexdigest()


def detect(media_type: str, head: bytes) -> str:
    """``gzip``, ``zstd`` or ``none`` for a layer, by media type or, failing that, magic bytes."""
    if media_type in MEDIA_TYPES_GZIP:
        return "gzip"
    if media_type in MEDIA_TYPES_ZSTD:
        return "zstd"
    if media_type in MEDIA_TYPES_PLAIN:
        return "none"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if media_type.endswith(("+encrypted", ".encrypted")):
        raise Unimplemented(f"unsupported layer media type {media_type}")
    return "none"


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Decompressing:
    """A decompressing stream whose corrupt or truncated input raises InvalidArgument (the
    decompressors raise EOFError, zlib/ISA-L/zstd errors, BadGzipFile); errors of the
    underlying stream itself pass through unchanged."""

    def __init__(self, stream: _Readable, kind: str, corrupt: tuple[type[Exception], ...]) -> None:
        self._stream = stream
        self._kind = kind
        self._corrupt = corrupt

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except self._corrupt as exc:
            raise InvalidArgument(f"corrupt {self._kind} layer: {exc}") from exc

    def readable(self) -> bool:
        return True


_GZIP_CORRUPT: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, *_INFLATE_ERRORS)


def decompressed(raw: IO[bytes], kind: str) -> IO[bytes]:
    """A stream of the decompressed bytes of ``raw``; corrupt input raises InvalidArgument on read."""
    if kind == "gzip":
        stream = _gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
        return _Decompressing(stream, kind, _GZIP_CORRUPT)  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)
        return _Decompressing(reader, kind, (EOFError, zstandard.ZstdError))  # type: ignore[return-value]
    return raw
