from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING

import pytest

from pycontainerd.config import loader
from pycontainerd.config.model import DEFAULT_ADDRESS, DEFAULT_ROOT, Config, ConfigError
from pycontainerd.config.render import render
from pycontainerd.plugin.builtins import builtin_registrations
from pycontainerd.server.daemon import decode_plugin_configs

if TYPE_CHECKING:
    from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_never_collide_with_containerd() -> None:
    cfg = loader.load(None).config
    assert cfg.root == DEFAULT_ROOT
    assert "containerd/" not in cfg.root.replace("pycontainerd", "")
    assert cfg.grpc.address == DEFAULT_ADDRESS != "/run/containerd/containerd.sock"
    assert cfg.ttrpc_address == DEFAULT_ADDRESS + ".ttrpc"
    assert cfg.grpc.max_recv_message_size == cfg.grpc.max_send_message_size == 16 << 20


def test_containerd_keys_are_read(tmp_path: Path) -> None:
    cfg = loader.load(
        write(
            tmp_path / "c.toml",
            'version = 2\nroot = "/r"\nstate = "/s"\n[grpc]\naddress = "/a.sock"\nuid = 5\n'
            'max_recv_message_size = 100\n[ttrpc]\naddress = "/t.sock"\n[debug]\nlevel = "debug"\n'
            '[metrics]\naddress = "127.0.0.1:1338"\n',
        )
    ).config
    assert (cfg.root, cfg.state, cfg.grpc.address, cfg.grpc.uid) == ("/r", "/s", "/a.sock", 5)
    assert cfg.grpc.max_recv_message_size == 100
    assert cfg.ttrpc_address == "/t.sock"
    assert cfg.debug.level == "debug"
    assert cfg.metrics.address == "127.0.0.1:1338"


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'version = 2\n[grpc]\nmax_recv_message_size = "big"\n')
    with pytest.raises(ConfigError, match=r"grpc\.max_recv_message_size: expected an integer"):
        loader.load(path)


def test_bad_plugin_value_names_the_full_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'version = 2\n[plugins."io.containerd.metadata.v1.bolt"]\ncontent_sharing_policy = 3\n',
    )
    loaded = loader.load(path)
    with pytest.raises(ConfigError, match=r'plugins\."io\.containerd\.metadata\.v1\.bolt"\.content_sharing_policy'):
        decode_plugin_configs(loaded.config, builtin_registrations(), [])


def test_unknown_keys_warn(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'version = 2\nbogus = 1\n[grpc]\nnope = "x"\n[plugins."io.example.v1.x"]\na = 1\n',
    )
    loaded = loader.load(path)
    warnings: list[str] = list(loaded.warnings)
    decode_plugin_configs(loaded.config, builtin_registrations(), warnings)
    text = "\n".join(warnings)
    assert "bogus" in text
    assert "grpc.nope" in text
    assert "io.example.v1.x" in text


@pytest.mark.parametrize("version", ["version = 1", ""])
def test_version_1_is_refused_with_help(tmp_path: Path, version: str) -> None:
    path = write(tmp_path / "c.toml", f"{version}\n")
    if not version:  # a file without version is read as the current version
        assert loader.load(path).config.version == 2
        return
    with pytest.raises(ConfigError, match=r"version 1 is not supported.*version = 2.*plugins\.cri"):
        loader.load(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        loader.load(write(tmp_path / "c.toml", "version = = 2"))
    with pytest.raises(ConfigError, match="does not exist"):
        loader.load(tmp_path / "missing.toml")


def test_imports_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "10-a.toml", 'version = 2\nstate = "/from-a"\ndisabled_plugins = ["x.y.a"]\n')
    write(tmp_path / "conf.d" / "20-b.toml", "version = 2\n[grpc]\nuid = 7\n")
    main = write(
        tmp_path / "c.toml",
        'version = 2\nimports = ["conf.d/*.toml"]\nroot = "/r"\nstate = "/s"\n'
        'disabled_plugins = ["x.y.main"]\n'
        '[grpc]\naddress = "/a"\n',
    )
    loaded = loader.load(main)
    cfg = loaded.config
    assert cfg.root == "/r"
    assert cfg.state == "/from-a"
    assert cfg.grpc.address == "/a"
    assert cfg.grpc.uid == 7
    assert cfg.disabled_plugins == ["x.y.main", "x.y.a"]
    assert [p.name for p in loaded.files] == ["c.toml", "10-a.toml", "20-b.toml"]


def test_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'version = 2\nroot = "/r"\n[grpc]\naddress = "/a"\n')
    cfg = loader.load(path, overrides={"root": "/o", "grpc": {"address": "/o.sock"}}).config
    assert (cfg.root, cfg.grpc.address) == ("/o", "/o.sock")


def test_default_render_round_trips(tmp_path: Path) -> None:
    text = render(Config(), builtin_registrations())
    parsed = tomllib.loads(text)
    assert parsed["version"] == 2
    assert parsed["plugins"]["io.containerd.metadata.v1.bolt"]["content_sharing_policy"] == "shared"
    reloaded = loader.load(write(tmp_path / "c.toml", text))
    plugins = reloaded.config.plugins
    reloaded.config.plugins = {}
    assert reloaded.config == Config()
    warnings: list[str] = []
    decoded = decode_plugin_configs(Config(plugins=plugins), builtin_registrations(), warnings)
    assert decoded == decode_plugin_configs(Config(), builtin_registrations(), [])
    assert not reloaded.warnings
    assert not warnings


def test_explain_names_where_each_value_came_from(tmp_path: Path) -> None:
    from pycontainerd.config import render
    from pycontainerd.config.loader import load

    drop_in = tmp_path / "conf.d" / "50-debug.toml"
    drop_in.parent.mkdir()
    drop_in.write_text('version = 2\n[debug]\nlevel = "debug"\n')
    main = tmp_path / "config.toml"
    main.write_text(
        f'version = 2\nroot = "/srv/pcd"\nimports = ["{tmp_path}/conf.d/*.toml"]\n[debug]\nlevel = "warn"\n'
    )
    loaded = load(main, overrides={"state": "/run/elsewhere"})
    text = render.explain(render.full_table(loaded.config), loaded.sources)
    lines = dict(line.split(" = ", 1) for line in text.splitlines())
    assert lines["root"] == f'"/srv/pcd"  # {main}'
    assert lines["debug.level"] == f'"debug"  # {drop_in}', "the drop-in overrides the main file"
    assert lines["state"] == '"/run/elsewhere"  # flag'
    assert lines["grpc.address"].endswith("# default")
