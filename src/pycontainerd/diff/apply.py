"""Apply a layer blob onto a snapshot's mounts (containerd's "walking" applier).

Fast paths avoid a mount altogether: a single bind mount is applied straight into its source
directory, and a single overlay mount straight into its ``upperdir`` with overlayfs
whiteouts (what the mount would have written). Anything else is mounted on a temporary
directory first. The blob is read once: decompressed and hashed on the way into the tar
applier, which yields the layer's diff ID.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from pycontainerd.archive.tar import ApplyOptions, ApplyStats, apply_tar
from pycontainerd.diff.compression import UNCOMPRESSED_LAYER, HashingReader, decompressed, detect
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pycontainerd.core.snapshots import Mount

READ_BUFFER = 1 << 20


@dataclass(frozen=True, slots=True)
class Applied:
    """The uncompressed layer that was applied."""

    media_type: str
    digest: str
    size: int
    stats: ApplyStats


def _option(options: Sequence[str], key: str) -> str | None:
    prefix = f"{key}="
    for opt in options:
        if opt.startswith(prefix):
            return opt[len(prefix) :]
    return None


def direct_target(mounts: Sequence[Mount]) -> tuple[str, ApplyOptions] | None:
    """Where to apply without mounting, and how, or None when a real mount is needed."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        if "ro" in m.options:
            raise FailedPrecondition("cannot apply a layer onto a read-only mount")
        return m.source, ApplyOptions(whiteouts="remove")
    if m.type == "overlay":
        upper = _option(m.options, "upperdir")
        if upper is None:
            raise FailedPrecondition("cannot apply a layer onto a read-only overlay (no upperdir)")
        chdir = getattr(m, "chdir", "") or ""
        if not os.path.isabs(upper):
            upper = os.path.join(chdir, upper)
        return upper, ApplyOptions(whiteouts="overlay")
    return None


def apply_layer(blob: Path, media_type: str, mounts: Sequence[Mount]) -> Applied:
    """Apply the layer in ``blob`` onto ``mounts``; returns its uncompressed descriptor."""
    with open(blob, "rb", buffering=READ_BUFFER) as raw:
        return apply_stream(raw, media_type, mounts)


def apply_stream(raw: IO[bytes], media_type: str, mounts: Sequence[Mount]) -> Applied:
    """Apply the (possibly compressed) layer read from ``raw`` onto ``mounts``.

    ``raw`` must offer ``peek`` (a buffered reader): the compression is sniffed from it."""
    if not mounts:
        raise InvalidArgument("no mounts to apply the layer onto")
    kind = detect(media_type, raw.peek(4)[:4])  # type: ignore[attr-defined]
    plain = HashingReader(decompressed(raw, kind))
    target = direct_target(mounts)
    stats = (
        apply_tar(plain, target[0], target[1])  # type: ignore[arg-type]
        if target is not None
        else _apply_mounted(plain, mounts)
    )
    plain.drain()
    return Applied(UNCOMPRESSED_LAYER, plain.digest(), plain.count, stats)


def _apply_mounted(stream: HashingReader, mounts: Sequence[Mount]) -> ApplyStats:
    from pycontainerd.snapshots import mount as mounting

    with tempfile.TemporaryDirectory(prefix="pycontainerd-apply-") as target:
        mounting.mount_all(list(mounts), target)
        try:
            return apply_tar(stream, target, ApplyOptions(whiteouts="remove"))  # type: ignore[arg-type]
        finally:
            mounting.unmount_all(target)
