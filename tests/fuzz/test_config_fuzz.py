"""Fuzzing config.toml: files shaped like the real schema (every table and key of the top level
and of every built-in plugin, values of the right type or not), version 1/2/3 layouts, imports,
and bytes that are not TOML at all. Loading, decoding every plugin's section and rendering the
effective config (``config dump``) either work or fail with ConfigError naming the problem: the
daemon prints "invalid configuration" instead of a traceback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from pycontainerd.config import loader, render
from pycontainerd.config.model import Config, ConfigError
from pycontainerd.plugin.builtins import PluginLoadError, all_registrations
from pycontainerd.plugin.proxy import proxy_registrations
from pycontainerd.server.daemon import decode_plugin_configs
from pycontainerd.server.logging import parse_level
from tests.fuzz.budget import count, fuzz_settings

REGISTRATIONS = all_registrations()
PLUGIN_CONFIGS = {r.uri: r.config for r in REGISTRATIONS if r.config is not None}

STRINGS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "5s",
            "1m30s",
            "-1s",
            "0",
            "abc",
            "1h2m3s",
            "10ms",
            "65536",
            "8080",
            "/",
            "../x",
            "debug",
            "json",
            "io.containerd.runc.v2",
            "overlayfs",
            "snapshot",
            "content",
            "unix:///x",
            "127.0.0.1:0",
            "linux/amd64",
        ]
    ),
)
TOML_SCALARS = st.one_of(
    STRINGS,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.dates(),
)
TOML_VALUES: st.SearchStrategy[Any] = st.recursive(
    TOML_SCALARS,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(STRINGS, c, max_size=3)),
    max_leaves=8,
)


def shaped(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a config field of type ``tp``: mostly of that type, one in twenty anything."""
    typed = _typed(tp, depth)
    return st.integers(0, 19).flatmap(lambda n: TOML_VALUES if n == 0 else typed)


def _typed(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_typed(a, depth) for a in typing.get_args(tp) if a is not type(None)])
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return table_of(tp, depth + 1)
    if depth > 4:
        return TOML_SCALARS
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return st.floats()
    if tp is str:
        return STRINGS
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return st.lists(_typed(item, depth + 1), max_size=3)
    if origin is dict:
        _, value = typing.get_args(tp) or (str, Any)
        return st.dictionaries(STRINGS, _typed(value, depth + 1), max_size=2)
    return TOML_VALUES


def table_of(cls: type, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A table for dataclass ``cls``: some of its fields (plus, sometimes, an unknown key)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: shaped(hints[f.name], depth) for f in dataclasses.fields(cls) if f.init}
    return st.fixed_dictionaries({}, optional={**fields, "unknown_key": TOML_VALUES})


PLUGINS = st.fixed_dictionaries({}, optional={uri: shaped(cls) for uri, cls in PLUGIN_CONFIGS.items()})
TOP_LEVEL = table_of(Config).map(lambda t: {k: v for k, v in t.items() if k not in ("plugins", "plugin_dir")})


# containerd 2.x (version 3) CRI sections, which the loader folds into the version 2 one.
V3_SECTIONS = {
    "io.containerd.cri.v1.images": st.fixed_dictionaries(
        {},
        optional={
            "snapshotter": STRINGS,
            "pinned_images": st.one_of(st.fixed_dictionaries({}, optional={"sandbox": TOML_VALUES}), TOML_VALUES),
            "runtime_platform": st.one_of(
                st.dictionaries(STRINGS, st.one_of(st.fixed_dictionaries({"snapshotter": TOML_VALUES}), TOML_VALUES)),
                TOML_VALUES,
            ),
            "registry": TOML_VALUES,
            "discard_unpacked_layers": TOML_VALUES,
            "image_pull_progress_timeout": TOML_VALUES,
        },
    ),
    "io.containerd.cri.v1.runtime": st.one_of(table_of(PLUGIN_CONFIGS["io.containerd.grpc.v1.cri"]), TOML_VALUES),
    "io.containerd.grpc.v1.cri": st.one_of(table_of(PLUGIN_CONFIGS["io.containerd.grpc.v1.cri"]), TOML_VALUES),
}
VERSIONS = st.integers(0, 19).flatmap(
    lambda n: st.sampled_from([1, 2, 3]) if n < 3 else TOML_SCALARS if n == 3 else st.just(2)
)


@st.composite
def config_tables(draw: st.DrawFn) -> dict[str, Any]:
    table = draw(TOP_LEVEL)
    table.pop("imports", None)  # imports are fuzzed apart: they name files
    if draw(st.booleans()):
        table["plugins"] = draw(PLUGINS)
    if draw(st.integers(0, 3)):
        table["version"] = draw(VERSIONS)
    if draw(st.integers(0, 3)) == 0:
        table["version"] = 3
        table["plugins"] = draw(st.fixed_dictionaries({}, optional=V3_SECTIONS))
    if draw(st.integers(0, 9)) == 0:  # version 1 short names, and their refusal
        table.setdefault("plugins", {})[draw(st.sampled_from(["cri", "linux"]))] = draw(
            V3_SECTIONS["io.containerd.cri.v1.runtime"]
        )
    return table


def check_loads_cleanly(path: Path) -> None:
    """Load ``path`` as the daemon (and ``config dump``) would; only configuration errors may escape."""
    try:
        loaded = loader.load(path)
        parse_level(loaded.config.debug.level)
    except ConfigError:
        return
    except ValueError as exc:
        # The one ValueError main reports as an invalid configuration.
        if "log level" not in str(exc):
            raise
        return
    try:
        registrations = proxy_registrations(loaded.config.proxy_plugins) + REGISTRATIONS
        resolved = decode_plugin_configs(loaded.config, registrations, list(loaded.warnings))
    except (ConfigError, PluginLoadError):
        return
    render.render(loaded.config, registrations, resolved=resolved)


@fuzz_settings(400)
@given(table=config_tables())
def test_schema_shaped_config_files(table: dict[str, Any]) -> None:
    count("config: schema-shaped files")
    with tempfile.TemporaryDirectory(prefix="pcd-fuzz-cfg-") as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(tomli_w.dumps(table))
        check_loads_cleanly(path)


@fuzz_settings(150)
@given(
    main=config_tables(),
    imported=st.lists(config_tables(), max_size=2),
    patterns=st.lists(
        st.one_of(st.sampled_from(["conf.d/*.toml", "missing.toml", "conf.d/0.toml", "[", ""]), TOML_SCALARS),
        max_size=3,
    ),
)
def test_config_imports(main: dict[str, Any], imported: list[dict[str, Any]], patterns: list[Any]) -> None:
    count("config: files with imports", 1 + len(imported))
    with tempfile.TemporaryDirectory(prefix="pcd-fuzz-cfg-") as tmp:
        conf_d = Path(tmp) / "conf.d"
        conf_d.mkdir()
        for i, table in enumerate(imported):
            (conf_d / f"{i}.toml").write_text(tomli_w.dumps(table))
        main["imports"] = patterns
        path = Path(tmp) / "config.toml"
        path.write_text(tomli_w.dumps(main))
        check_loads_cleanly(path)


@fuzz_settings(200)
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)), seed=config_tables())
def test_config_bytes(data: bytes, seed: dict[str, Any]) -> None:
    count("config: raw bytes")
    with tempfile.TemporaryDirectory(prefix="pcd-fuzz-cfg-") as tmp:
        path = Path(tmp) / "config.toml"
        text = tomli_w.dumps(seed).encode()
        cut = len(data) % (len(text) + 1)
        path.write_bytes(text[:cut] + data)  # a real file cut short and continued with rubbish
        check_loads_cleanly(path)


def test_unreadable_config_paths() -> None:
    for path in ("/nonexistent/config.toml", "/", os.devnull):
        count("config: raw bytes")
        check_loads_cleanly(Path(path))
