"""The snapshotter registrations: roots, exports, config, and skipping overlayfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, PluginSet, Registration, SkipPlugin
from pycontainerd.snapshots import plugin
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter


def context(reg: Registration, tmp_path: Path, config: object = None) -> InitContext:
    return InitContext(reg, tmp_path / reg.uri, tmp_path / "state", config, PluginSet())


def test_native_registration(tmp_path: Path) -> None:
    reg = plugin.NATIVE_REGISTRATION
    assert (reg.type, reg.id, reg.config) == (types.SNAPSHOT, "native", plugin.NativeConfig)
    ctx = context(reg, tmp_path)
    sn = reg.init(ctx)
    try:
        assert isinstance(sn, NativeSnapshotter)
        assert ctx.exports == {"root": str(tmp_path / "io.containerd.snapshotter.v1.native")}
        assert ctx.platforms[0]["os"] == "linux"
        assert (tmp_path / "io.containerd.snapshotter.v1.native" / "metadata.db").exists()
        assert ctx.on_close == [sn.close]
    finally:
        sn.close()


def test_root_path_overrides(tmp_path: Path) -> None:
    ctx = context(plugin.NATIVE_REGISTRATION, tmp_path, plugin.NativeConfig(root_path=str(tmp_path / "elsewhere")))
    sn = plugin.NATIVE_REGISTRATION.init(ctx)
    sn.close()
    assert ctx.exports["root"] == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "snapshots").is_dir()


def test_overlay_skips_when_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "unsupported_reason", lambda root: "overlayfs test mount failed: EINVAL")
    with pytest.raises(SkipPlugin, match="skip plugin: overlayfs test mount failed"):
        plugin.OVERLAY_REGISTRATION.init(context(plugin.OVERLAY_REGISTRATION, tmp_path))


def test_overlay_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "unsupported_reason", lambda root: None)
    config = plugin.OverlayConfig(upperdir_label=True, mount_options=["index=on"])
    ctx = context(plugin.OVERLAY_REGISTRATION, tmp_path, config)
    sn = plugin.OVERLAY_REGISTRATION.init(ctx)
    try:
        assert isinstance(sn, OverlaySnapshotter)
        assert [o for o in sn.options if o != "userxattr"] == ["index=on"]
        sn.prepare("a", "")
        assert "containerd.io/snapshot/overlay.upperdir" in sn.stat("a").labels
        assert ctx.exports["root"] == str(tmp_path / "io.containerd.snapshotter.v1.overlayfs")
    finally:
        sn.close()


@pytest.mark.root
def test_overlay_loads_here(tmp_path: Path) -> None:
    sn = plugin.OVERLAY_REGISTRATION.init(context(plugin.OVERLAY_REGISTRATION, tmp_path))
    assert isinstance(sn, OverlaySnapshotter)
    sn.close()
