"""Registrations of the built-in snapshotters (``io.containerd.snapshotter.v1.*``).

Config tables mirror containerd's (``[plugins."io.containerd.snapshotter.v1.overlayfs"]``):
``root_path`` overrides the plugin's root, which is exported as ``root`` for introspection.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration, SkipPlugin
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter, unsupported_reason


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
    """Accepted for compatibility; ID-remapped snapshots are not supported yet."""
    mount_options: list[str] = field(default_factory=list)
    """Extra options for overlay mounts (not for bind mounts)."""


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
    snapshotter = OverlaySnapshotter(
        root, upperdir_label=config.upperdir_label, mount_options=tuple(config.mount_options)
    )
    ctx.on_close.append(snapshotter.close)
    return snapshotter


NATIVE_REGISTRATION = Registration(type=types.SNAPSHOT, id="native", init=_init_native, config=NativeConfig)
OVERLAY_REGISTRATION = Registration(type=types.SNAPSHOT, id="overlayfs", init=_init_overlay, config=OverlayConfig)
REGISTRATIONS = (OVERLAY_REGISTRATION, NATIVE_REGISTRATION)
"""Both, overlayfs first (containerd's default snapshotter)."""
