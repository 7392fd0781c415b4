"""The CRI plugin's config: containerd's keys, defaults, and the properties 2.0 removed."""

from __future__ import annotations

import pytest

from pycontainerd.config.decode import decode_dataclass
from pycontainerd.config.model import ConfigError
from pycontainerd.cri.config import CRIConfig, parse_duration


def _decode(table: dict[str, object]) -> CRIConfig:
    warnings: list[str] = []
    return decode_dataclass(CRIConfig, table, 'plugins."io.containerd.grpc.v1.cri"', warnings)


def test_defaults() -> None:
    config = CRIConfig()
    assert config.containerd.default_runtime_name == "runc"
    assert config.handler("").runtime_type == "io.containerd.runc.v2"
    assert config.cni.conf_dir == "/etc/cni/net.d"
    assert "/usr/lib/cni" in config.cni.plugin_dirs
    assert config.stream_server_address == "127.0.0.1"
    assert config.snapshotter_for("") == "overlayfs"


def test_runtimes_merge_with_the_default_handler() -> None:
    config = _decode(
        {
            "containerd": {
                "runtimes": {
                    "fast": {
                        "runtime_type": "io.containerd.runc.v2",
                        "snapshotter": "native",
                        "options": {"BinaryName": "crun"},
                    }
                }
            }
        }
    )
    assert set(config.containerd.runtimes) == {"runc", "fast"}
    assert config.snapshotter_for("fast") == "native"
    assert config.snapshotter_for("runc") == "overlayfs"
    assert config.handler("fast").runc_options() is not None


def test_cni_bin_dir_of_1x_comes_first() -> None:
    config = _decode({"cni": {"bin_dir": "/my/bin"}})
    assert config.cni.plugin_dirs[0] == "/my/bin"


@pytest.mark.parametrize(
    ("table", "named", "instead"),
    [
        ({"systemd_cgroup": True}, "systemd_cgroup", "SystemdCgroup"),
        ({"containerd": {"untrusted_workload_runtime": {}}}, "untrusted_workload_runtime", "runtime handler"),
        ({"containerd": {"default_runtime": {}}}, "default_runtime", "default_runtime_name"),
        ({"containerd": {"runtimes": {"x": {"runtime_engine": "runc"}}}}, "runtime_engine", "runtime v2"),
        ({"containerd": {"runtimes": {"x": {"runtime_root": "/r"}}}}, "runtime_root", "options.Root"),
        ({"containerd": {"runtimes": {"x": {"options": {"CriuPath": "/c"}}}}}, "CriuPath", "PATH"),
        ({"registry": {"mirrors": {}}}, "mirrors", "config_path"),
        ({"registry": {"configs": {}}}, "configs", "config_path"),
        ({"registry": {"auths": {}}}, "auths", "config_path"),
    ],
)
def test_removed_properties_are_refused_with_their_replacement(
    table: dict[str, object], named: str, instead: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _decode(table)
    assert named in str(err.value)
    assert "removed in containerd 2.0" in str(err.value)
    assert instead in str(err.value)


def test_unknown_default_runtime_is_refused() -> None:
    with pytest.raises(ConfigError, match="default_runtime_name"):
        _decode({"containerd": {"default_runtime_name": "nope"}})


def test_unknown_runc_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="Bogus"):
        _decode({"containerd": {"runtimes": {"x": {"options": {"Bogus": 1}}}}})


def test_bad_sandboxer_and_port() -> None:
    with pytest.raises(ConfigError, match="sandboxer"):
        _decode({"containerd": {"runtimes": {"x": {"sandboxer": "vm"}}}})
    with pytest.raises(ConfigError, match="stream_server_port"):
        _decode({"stream_server_port": "http"})


def test_sandbox_mode_of_1_7_is_the_sandboxer() -> None:
    assert _decode({"containerd": {"runtimes": {"x": {"sandbox_mode": "shim"}}}}).handler("x").sandboxer == "shim"


def test_durations() -> None:
    assert parse_duration("4h0m0s", "k") == 4 * 3600
    assert parse_duration("1m30s", "k") == 90
    assert parse_duration("500ms", "k") == 0.5
    assert parse_duration("0", "k") == 0
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration("4 hours", "k")
    with pytest.raises(ConfigError, match="stream_idle_timeout"):
        _decode({"stream_idle_timeout": "soon"})


def test_tls_streaming_is_refused() -> None:
    with pytest.raises(ConfigError, match="TLS"):
        _decode({"enable_tls_streaming": True})
