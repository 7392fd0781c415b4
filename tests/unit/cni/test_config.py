"""Loading network configs like go-cni: file order, wrapping, limits, validation, binaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.cni import config as cniconfig
from pycontainerd.cni.config import find_plugin, load_dir, load_file, loopback_network, parse_conflist
from pycontainerd.cni.errors import InvalidConfig, NotInitialized, PluginNotFound
from pycontainerd.errdefs import FailedPrecondition
from tests.unit.cni.fakeplugin import write_json


def conflist(name: str, *types: str, version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": name, "plugins": [{"type": t} for t in types]}


def test_files_load_in_lexical_order_and_single_confs_are_wrapped(tmp_path: Path) -> None:
    write_json(tmp_path / "20-second.conf", {"cniVersion": "0.4.0", "name": "second", "type": "ptp", "mtu": 1400})
    write_json(tmp_path / "10-first.conflist", conflist("first", "bridge", "portmap"))
    write_json(tmp_path / "30-third.json", {"cniVersion": "0.3.1", "name": "third", "type": "macvlan"})
    write_json(tmp_path / "05-ignored.txt", conflist("ignored", "bridge"))
    (tmp_path / "00-dir.conf").mkdir()

    networks = load_dir(tmp_path, max_conf_num=0)

    assert [n.name for n in networks] == ["first", "second", "third"]
    assert networks[0].plugin_types == ("bridge", "portmap")
    second = networks[1]
    assert second.plugin_types == ("ptp",)
    assert second.cni_version == "0.4.0"
    assert second.plugins[0].conf["mtu"] == 1400
    assert second.source == str(tmp_path / "20-second.conf")
    assert json.loads(second.raw)["plugins"][0]["type"] == "ptp", "the cached config bytes are a conflist"


@pytest.mark.parametrize(
    ("max_conf_num", "expected"), [(1, ["a"]), (2, ["a", "b"]), (0, ["a", "b", "c"]), (9, ["a", "b", "c"])]
)
def test_max_conf_num_limits_the_networks(tmp_path: Path, max_conf_num: int, expected: list[str]) -> None:
    for name in "cab":
        write_json(tmp_path / f"{name}.conflist", conflist(name, "bridge"))
    assert [n.name for n in load_dir(tmp_path, max_conf_num)] == expected


def test_default_is_only_the_first_file(tmp_path: Path) -> None:
    write_json(tmp_path / "b.conflist", conflist("b", "bridge"))
    write_json(tmp_path / "a.conflist", conflist("a", "bridge"))
    assert [n.name for n in load_dir(tmp_path)] == ["a"]


def test_a_broken_file_beyond_max_conf_num_is_not_read(tmp_path: Path) -> None:
    write_json(tmp_path / "a.conflist", conflist("a", "bridge"))
    (tmp_path / "b.conflist").write_text("{not json")
    assert [n.name for n in load_dir(tmp_path, 1)] == ["a"]
    with pytest.raises(InvalidConfig, match=r"b\.conflist"):
        load_dir(tmp_path, 2)


@pytest.mark.parametrize("missing", [True, False])
def test_no_config_is_not_initialized(tmp_path: Path, missing: bool) -> None:
    conf_dir = tmp_path / "net.d"
    if not missing:
        conf_dir.mkdir()
        (conf_dir / "README").write_text("no configs here")
    with pytest.raises(NotInitialized) as info:
        load_dir(conf_dir)
    assert str(info.value) == f"no network config found in {conf_dir}: cni plugin not initialized"
    assert isinstance(info.value, FailedPrecondition)


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("bad.conflist", "{not json", "error parsing configuration"),
        ("bad.conf", '{"cniVersion": "1.0.0", "name": "x"}', "network type not found"),
        ("bad.conflist", json.dumps({"cniVersion": "1.0.0", "name": "x", "plugins": []}), "no plugins in list"),
        ("bad.conflist", json.dumps({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}), "no name"),
        ("bad.conflist", json.dumps(conflist("bad name", "bridge")), "invalid network name"),
        ("bad.conflist", json.dumps(conflist("x", "bridge", version="0.2.0")), "unsupported cniVersion 0.2.0"),
        ("bad.conflist", json.dumps(conflist("x", "bridge", version="")), "no cniVersion"),
        (
            "bad.conflist",
            json.dumps({"cniVersion": "1.0.0", "name": "x", "plugins": [{"mtu": 1}]}),
            "plugin 0: network type",
        ),
        ("bad.conflist", json.dumps(conflist("x", "../evil")), "invalid plugin type"),
        ("bad.conflist", json.dumps({**conflist("x", "bridge"), "disableCheck": "maybe"}), "disableCheck"),
        ("bad.json", "[1, 2]", "not a JSON object"),
    ],
)
def test_invalid_configs_name_the_file(tmp_path: Path, file_name: str, content: str, message: str) -> None:
    (tmp_path / file_name).write_text(content)
    with pytest.raises(InvalidConfig) as info:
        load_dir(tmp_path)
    assert message in str(info.value)
    assert str(tmp_path / file_name) in str(info.value)
    assert str(info.value).endswith("invalid cni config")


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_supported_versions(version: str) -> None:
    assert parse_conflist(json.dumps(conflist("x", "bridge", version=version)).encode()).cni_version == version


def test_cni_versions_list_picks_the_highest_supported() -> None:
    doc = {**conflist("x", "bridge", version="0.4.0"), "cniVersions": ["1.0.0", "9.9.9", "0.3.1"]}
    assert parse_conflist(json.dumps(doc).encode()).cni_version == "1.0.0"


def test_capabilities_and_flags() -> None:
    doc = {
        "cniVersion": "1.0.0",
        "name": "x",
        "disableCheck": "true",
        "plugins": [
            {"type": "bridge"},
            {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
        ],
    }
    net = parse_conflist(json.dumps(doc).encode())
    assert net.disable_check is True
    assert net.plugins[0].capabilities == frozenset()
    assert net.plugins[1].capabilities == {"portMappings"}


def test_conflist_takes_plugin_fragments_from_its_directory(tmp_path: Path) -> None:
    write_json(tmp_path / "10-net.conflist", conflist("net", "bridge"))
    write_json(tmp_path / "net" / "20-tuning.conf", {"type": "tuning"})
    write_json(tmp_path / "net" / "10-portmap.conf", {"type": "portmap"})
    assert load_file(tmp_path / "10-net.conflist").plugin_types == ("bridge", "portmap", "tuning")
    write_json(tmp_path / "10-net.conflist", {**conflist("net", "bridge"), "loadOnlyInlinedPlugins": True})
    assert load_file(tmp_path / "10-net.conflist").plugin_types == ("bridge",)


def test_loopback_network() -> None:
    lo = loopback_network()
    assert (lo.name, lo.plugin_types) == ("cni-loopback", ("loopback",))
    assert cniconfig.at_least(lo.cni_version, "0.4.0"), "CHECK must be possible on it"


def test_find_plugin_searches_bin_dirs_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "opt", tmp_path / "usr"
    for d in (first, second):
        d.mkdir()
    (second / "bridge").write_text("#!/bin/sh\n")
    (second / "bridge").chmod(0o755)
    (first / "bridge").write_text("not executable")
    (first / "bridge").chmod(0o644)
    (first / "portmap").mkdir()
    assert find_plugin("bridge", [str(first), str(second)]) == str(second / "bridge")
    with pytest.raises(PluginNotFound, match="portmap"):
        find_plugin("portmap", [str(first), str(second)])
    with pytest.raises(PluginNotFound):
        find_plugin("../bridge", [str(first)])


def test_default_bin_dirs_include_debians() -> None:
    assert "/usr/lib/cni" in cniconfig.DEFAULT_BIN_DIRS
    assert cniconfig.DEFAULT_BIN_DIRS[0] == "/opt/cni/bin"
