"""Config files of versions 1 and 3 in the version 2 layout; ``--strict``; ``config migrate``."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

import pytest

from pycontainerd.cmd import daemon as cmd
from pycontainerd.config import loader
from pycontainerd.config.migrate import known_plugin_ids, migrate
from pycontainerd.cri.config import CRIConfig
from pycontainerd.plugin.builtins import builtin_registrations
from pycontainerd.server.daemon import decode_plugin_configs

if TYPE_CHECKING:
    from pathlib import Path

V3 = """
version = 3
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
  image_pull_progress_timeout = "5m"
  use_local_image_pull = true
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.example/pause:3.10"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"
  [plugins."io.containerd.cri.v1.images".runtime_platform.fast]
    snapshotter = "btrfs"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.fast]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/opt/cni/bin"]
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_port = "10010"
"""


def test_version_3_cri_sections_merge_into_the_version_2_one() -> None:
    table, notes = migrate(tomllib.loads(V3))
    assert table["version"] == 2
    assert set(table["plugins"]) == {"io.containerd.grpc.v1.cri"}
    cri = table["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.example/pause:3.10"
    assert cri["containerd"]["snapshotter"] == "native"
    assert cri["containerd"]["runtimes"]["fast"] == {"runtime_type": "io.containerd.runc.v2", "snapshotter": "btrfs"}
    assert cri["cni"]["bin_dirs"] == ["/opt/cni/bin"] and cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cri["stream_server_port"] == "10010" and cri["image_pull_progress_timeout"] == "5m"
    assert any("use_local_image_pull" in n and "dropped" in n for n in notes)


def test_a_containerd_2_config_file_is_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(V3)
    loaded = loader.load(path)
    warnings = list(loaded.warnings)
    resolved = decode_plugin_configs(loaded.config, builtin_registrations(), warnings)
    cri = resolved["io.containerd.grpc.v1.cri"]
    assert isinstance(cri, CRIConfig)
    assert cri.sandbox_image == "registry.example/pause:3.10"
    assert cri.containerd.snapshotter == "native"
    assert cri.containerd.runtimes["fast"].snapshotter == "btrfs"
    assert loaded.sources[("plugins", "io.containerd.grpc.v1.cri", "sandbox_image")] == str(path)
    assert not cmd.strict_violations(warnings)


def test_version_1_sections_get_their_full_names() -> None:
    v1 = 'disabled_plugins = ["aufs", "cri"]\n[plugins.cri]\nsandbox_image = "p:1"\n[plugins.nri]\ndisable = true\n'
    known = known_plugin_ids([r.uri for r in builtin_registrations()])
    table, notes = migrate(tomllib.loads(v1), known=known)
    assert table["disabled_plugins"] == ["io.containerd.snapshotter.v1.aufs", "io.containerd.grpc.v1.cri"]
    assert table["plugins"] == {
        "io.containerd.grpc.v1.cri": {"sandbox_image": "p:1"},
        "io.containerd.nri.v1.nri": {"disable": True},
    }
    assert '[plugins.cri] -> [plugins."io.containerd.grpc.v1.cri"]' in notes


def test_migrate_command_prints_a_loadable_version_2_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "v1.toml"
    src.write_text('root = "/srv/pcd"\n[plugins.scheduler]\npause_threshold = 0.05\n')
    assert cmd.main(["config", "migrate", "-c", str(src)]) == 0
    out = capsys.readouterr()
    assert "[plugins.scheduler] ->" in out.err
    migrated = tmp_path / "v2.toml"
    migrated.write_text(out.out)
    loaded = loader.load(migrated)
    assert loaded.config.root == "/srv/pcd"
    resolved = decode_plugin_configs(loaded.config, builtin_registrations(), [])
    assert resolved["io.containerd.gc.v1.scheduler"].pause_threshold == 0.05


def test_strict_refuses_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text('version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\npause_treshold = 0.1\n')
    assert cmd.main(["config", "dump", "-c", str(path)]) == 0
    capsys.readouterr()
    assert cmd.main(["config", "dump", "--strict", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        'unknown keys refused (--strict): unknown config key plugins."io.containerd.gc.v1.scheduler".pause_treshold'
        in err
    )
    # The daemon itself refuses to start (before touching anything).
    assert cmd.main(["--strict", "-c", str(path), "--root", str(tmp_path / "r"), "--state", str(tmp_path / "s")]) == 1
    assert not (tmp_path / "r").exists()
