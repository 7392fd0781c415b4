"""Task checkpoints as containerd stores them: media types and the image-directory tarball.

``Tasks.Checkpoint`` has the shim dump the task into a directory of CRIU images, then stores that
directory as one uncompressed tar blob (:data:`MEDIA_TYPE_CHECKPOINT`, entry names relative to the
directory, directories included) next to the container's spec (:data:`MEDIA_TYPE_CONFIG`: a
marshalled ``google.protobuf.Any``). The client writes the index that ties them into an image.
``Tasks.Create`` with a ``checkpoint`` descriptor unpacks the tar into a directory the shim restores
from. The other media types are written by clients (``ctr containers checkpoint``).
"""

from __future__ import annotations

import os
import tarfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

MEDIA_TYPE_CHECKPOINT = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
MEDIA_TYPE_PREDUMP = "application/vnd.containerd.container.criu.checkpoint.predump.tar"
MEDIA_TYPE_CONFIG = "application/vnd.containerd.container.checkpoint.config.v1+proto"
MEDIA_TYPE_OPTIONS = "application/vnd.containerd.container.checkpoint.options.v1+proto"
MEDIA_TYPE_RUNTIME_NAME = "application/vnd.containerd.container.checkpoint.runtime.name"
MEDIA_TYPE_RUNTIME_OPTIONS = "application/vnd.containerd.container.checkpoint.runtime.options+proto"

# Temp directory prefixes, as containerd names them (dump: Tasks.Checkpoint; restore: Tasks.Create).
DUMP_PREFIX = "ctrd-checkpoint"
RESTORE_DIR = "restore"


class _Sink:
    """A write-only file object over a callback, for ``tarfile`` in stream mode."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.size = 0

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        self.size += len(data)
        return len(data)


def pack_dir(directory: str, write: Callable[[bytes], object]) -> int:
    """Stream ``directory`` as an uncompressed PAX tar into ``write``; returns the bytes written.

    Entries are sorted (the same images give the same blob) and named relative to the directory;
    symlinks are stored as links, never followed.
    """
    sink = _Sink(write)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in [*sorted(dirs), *sorted(files)]:
                path = os.path.join(root, name)
                info = tf.gettarinfo(path, arcname=os.path.relpath(path, directory))
                info.uname = info.gname = ""
                if info.isfile():
                    with open(path, "rb") as fh:
                        tf.addfile(info, fh)
                else:
                    tf.addfile(info)
    return sink.size
