"""Make a compressed layer file from two sets of mounts (the Diff RPC's disk work)."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from pycontainerd.diff.create import write_diff

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from pycontainerd.core.snapshots import Mount

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


def _gzip(out: IO[bytes]) -> IO[bytes]:
    from isal import igzip

    return igzip.GzipFile(fileobj=out, mode="wb", mtime=0)  # type: ignore[no-untyped-call,return-value]


def _zstd(out: IO[bytes]) -> IO[bytes]:
    import zstandard

    return zstandard.ZstdCompressor().stream_writer(out, closefd=False)


COMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]] | None] = {
    MEDIA_TYPE_TAR: None,
    MEDIA_TYPE_GZIP: _gzip,
    MEDIA_TYPE_ZSTD: _zstd,
}


@dataclass(frozen=True, slots=True)
class Layer:
    """The layer file that was written."""

    digest: str
    size: int
    uncompressed_digest: str
    compressed: bool


class _Tee:
    """Hashes the uncompressed tar on its way into the compressor."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        self.sink.flush()


@contextlib.contextmanager
def _mounted(mounts: Sequence[Mount]) -> Iterator[str]:
    # Reading a bind mount needs no mount at all: its source is the tree (ro or not).
    if len(mounts) == 1 and (mounts[0].type == "bind" or "rbind" in mounts[0].options):
        yield mounts[0].source
        return
    from pycontainerd.snapshots import mount as mounting

    with tempfile.TemporaryDirectory(prefix="pycontainerd-diffmnt-") as tmp:
        mounting.mount_all(list(mounts), tmp)
        try:
            yield tmp
        finally:
            mounting.unmount_all(tmp)


def make_layer(lower: Sequence[Mount], upper: Sequence[Mount], dest: Path, media_type: str) -> Layer:
    """Write the compressed diff of ``lower`` -> ``upper`` to ``dest``."""
    compressor = COMPRESSORS[media_type]
    with _mounted(lower) as lower_dir, _mounted(upper) as upper_dir, dest.open("wb") as raw:
        out = compressor(raw) if compressor is not None else raw
        tee = _Tee(out)
        write_diff(tee, lower_dir, upper_dir)  # type: ignore[arg-type]
        if compressor is not None:
            out.close()
    data = hashlib.sha256()
    size = 0
    with dest.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            data.update(chunk)
            size += len(chunk)
    return Layer("sha256:" + data.hexdigest(), size, "sha256:" + tee.hash.hexdigest(), compressor is not None)
