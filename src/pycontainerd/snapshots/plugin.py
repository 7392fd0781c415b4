"""Registrations of the built-in snapshotters (``io.containerd.snapshotter.v1.*``).

Config tables mirror containerd's (``[plugins."io.containerd.snapshotter.v1.overlayfs"]``):
``root_path`` overrides the plugin's root, which is exported as ``root`` for introspection.
``btrfs`` skips itself unless its root is on btrfs; ``blockfile`` unless loop devices and a
scratch image (configured, or made with e2fsprogs) can be had. devmapper is not offered: see
docs/snapshotters.md.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration, SkipPlugin
from pycontainerd.snapshots import blockfile, btrfs, idmap, loopdev
from pycontainerd.snapshots.blockfile import BlockfileSnapshotter
from pycontainerd.snapshots.btrfs import BtrfsSnapshotter
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter, unsupported_reason

log = logging.getLogger(__name__)


@dataclass(slots=True)
class NativeConfig:
    """``[plugins."io.containerd.snapshotter.v1.native"]``."""

    root_path: str = ""
    """Directory for snapshots and their metadata; empty means the plugin's root."""


@dataclass(slots=True)
class OverlayConfig:
    """``[plugins."io.containerd.snapshotter.v1.overlayfs"]``."""

    root_path: str = ""
    """Directory for snapshots and their metadata; empty means the plugin's root."""
    upperdir_label: bool = False
    """Report each snapshot's upper directory as label ``containerd.io/snapshot/overlay.upperdir``."""
    sync_remove: bool = False
    """Accepted for compatibility. Removal is always synchronous here: backend snapshots are
    only removed by garbage collection, which already runs in the background."""
    slow_chown: bool = False
    """Let clients fall back to chown-remapped copies of the layers for containers with a user
    namespace when ID-mapped mounts do not work here (slow, and a full copy of the image per
    mapping). Off: the plugin advertises ``only-remap-ids`` and such clients fail instead."""
    mount_options: list[str] = field(default_factory=list)
    """Extra options for overlay mounts (not for bind mounts)."""


@dataclass(slots=True)
class BtrfsConfig:
    """``[plugins."io.containerd.snapshotter.v1.btrfs"]``."""

    root_path: str = ""
    """Directory for snapshots and their metadata, on a mounted btrfs; empty means the plugin's root."""


@dataclass(slots=True)
class BlockfileConfig:
    """``[plugins."io.containerd.snapshotter.v1.blockfile"]``."""

    root_path: str = ""
    """Directory for snapshots and their metadata; empty means the plugin's root."""
    scratch_file: str = ""
    """An empty filesystem image copied as every base snapshot; empty means one is made with
    mkfs.ext4 (pycontainerd only: containerd skips the plugin without it)."""
    fs_type: str = "ext4"
    """Filesystem inside the images, used as the mount type."""
    mount_options: list[str] = field(default_factory=list)
    """Options of every mount; ``loop`` is added when missing (empty means just ``loop``)."""
    recreate_scratch: bool = False
    """Replace ``<root>/scratch`` at every start instead of keeping the existing one."""
    scratch_size: str = blockfile.DEFAULT_SCRATCH_SIZE
    """Size of a scratch image made with mkfs.ext4 (sparse: only what is written takes space)."""


def _platform() -> dict[str, str]:
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return {"os": "linux", "architecture": arch}


def _root(ctx: InitContext, root_path: str) -> Path:
    root = Path(root_path) if root_path else ctx.root
    ctx.exports["root"] = str(root)
    ctx.platforms.append(_platform())
    return root


def _init_native(ctx: InitContext) -> NativeSnapshotter:
    config = ctx.config if isinstance(ctx.config, NativeConfig) else NativeConfig()
    snapshotter = NativeSnapshotter(_root(ctx, config.root_path))
    ctx.on_close.append(snapshotter.close)
    return snapshotter


def _init_overlay(ctx: InitContext) -> OverlaySnapshotter:
    config = ctx.config if isinstance(ctx.config, OverlayConfig) else OverlayConfig()
    root = _root(ctx, config.root_path)
    reason = unsupported_reason(root)
    if reason is not None:
        raise SkipPlugin(reason)
    no_idmap = idmap.unsupported_reason(root)
    if no_idmap is not None:
        log.info("overlayfs: no ID-mapped mounts under %s (%s): user namespaces need slow_chown", root, no_idmap)
    snapshotter = OverlaySnapshotter(
        root,
        upperdir_label=config.upperdir_label,
        mount_options=tuple(config.mount_options),
        remap_ids=no_idmap is None,
        slow_chown=config.slow_chown,
    )
    ctx.capabilities.extend(snapshotter.capabilities)
    ctx.on_close.append(snapshotter.close)
    return snapshotter


def _init_btrfs(ctx: InitContext) -> BtrfsSnapshotter:
    config = ctx.config if isinstance(ctx.config, BtrfsConfig) else BtrfsConfig()
    root = _root(ctx, config.root_path)
    reason = btrfs.unsupported_reason(root)
    if reason is not None:
        raise SkipPlugin(reason)
    snapshotter = BtrfsSnapshotter(root)
    ctx.on_close.append(snapshotter.close)
    return snapshotter


def _init_blockfile(ctx: InitContext) -> BlockfileSnapshotter:
    config = ctx.config if isinstance(ctx.config, BlockfileConfig) else BlockfileConfig()
    root = _root(ctx, config.root_path)
    if not Path(loopdev.LOOP_CONTROL).exists():
        raise SkipPlugin(f"loop devices are not available ({loopdev.LOOP_CONTROL} is missing)")
    reason = blockfile.missing_tools(config.fs_type, config.scratch_file)
    if reason is not None:
        raise SkipPlugin(reason)
    snapshotter = BlockfileSnapshotter(
        root,
        scratch_file=config.scratch_file,
        fs_type=config.fs_type,
        mount_options=tuple(config.mount_options),
        recreate_scratch=config.recreate_scratch,
        scratch_size=config.scratch_size,
    )
    ctx.on_close.append(snapshotter.close)
    return snapshotter


NATIVE_REGISTRATION = Registration(type=types.SNAPSHOT, id="native", init=_init_native, config=NativeConfig)
OVERLAY_REGISTRATION = Registration(type=types.SNAPSHOT, id="overlayfs", init=_init_overlay, config=OverlayConfig)
BTRFS_REGISTRATION = Registration(type=types.SNAPSHOT, id="btrfs", init=_init_btrfs, config=BtrfsConfig)
BLOCKFILE_REGISTRATION = Registration(type=types.SNAPSHOT, id="blockfile", init=_init_blockfile, config=BlockfileConfig)
REGISTRATIONS = (OVERLAY_REGISTRATION, NATIVE_REGISTRATION, BTRFS_REGISTRATION, BLOCKFILE_REGISTRATION)
"""overlayfs first (containerd's default snapshotter), then native, btrfs and blockfile."""
