"""``[proxy_plugins]`` registrations, and the metadata store's choice of its one content plugin."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pycontainerd.config.model import ConfigError, ProxyPlugin
from pycontainerd.content.local.store import LocalStore
from pycontainerd.content.proxy import ProxyContentStore
from pycontainerd.events.exchange import Exchange
from pycontainerd.metadata import plugin as metadata_plugin
from pycontainerd.plugin import types
from pycontainerd.plugin.proxy import proxy_registrations
from pycontainerd.plugin.registration import FatalPluginError, InitContext, Plugin, PluginSet, Registration, run_init


def test_content_and_diff_proxies_register_by_short_name_or_type_uri() -> None:
    regs = proxy_registrations(
        {
            "blobs": ProxyPlugin(type="content", address="/run/c.sock"),
            "apply": ProxyPlugin(type="diff", address="/run/d.sock"),
            "long": ProxyPlugin(type="io.containerd.content.v1", address="/run/c2.sock"),
        }
    )
    assert [r.uri for r in regs] == [
        "io.containerd.content.v1.blobs",
        "io.containerd.differ.v1.apply",
        "io.containerd.content.v1.long",
    ]
    with pytest.raises(ConfigError, match=r"proxy_plugins\.x\.type: 'warp' is not supported"):
        proxy_registrations({"x": ProxyPlugin(type="warp", address="/x.sock")})
    with pytest.raises(ConfigError, match=r"proxy_plugins\.y\.address"):
        proxy_registrations({"y": ProxyPlugin(type="diff")})


def test_proxy_init_exports_its_address_and_contacts_nothing(tmp_path: Path) -> None:
    (reg,) = proxy_registrations(
        {"blobs": ProxyPlugin(type="content", address=str(tmp_path / "absent.sock"), exports={"k": "v"})}
    )
    ctx = InitContext(registration=reg, root=tmp_path, state=tmp_path, config=None, plugins=PluginSet())
    store = asyncio.run(run_init(reg, ctx))
    assert isinstance(store, ProxyContentStore)
    assert ctx.exports == {"k": "v", "address": str(tmp_path / "absent.sock")}
    assert len(ctx.on_close) == 1
    store.close()


def _plugins(tmp_path: Path, content_ids: list[str]) -> PluginSet:
    plugins = PluginSet()
    plugins.add(Plugin(Registration(type=types.EVENT, id="exchange", init=lambda _c: None), instance=Exchange()))
    for cid in content_ids:
        reg = Registration(type=types.CONTENT, id=cid, init=lambda _c: None)
        plugins.add(Plugin(reg, instance=LocalStore(tmp_path / cid)))
    return plugins


def _init_metadata(tmp_path: Path, plugins: PluginSet) -> metadata_plugin.Metadata:
    reg = metadata_plugin.REGISTRATION
    ctx = InitContext(registration=reg, root=tmp_path / "meta", state=tmp_path / "state", config=None, plugins=plugins)
    metadata = metadata_plugin._init(ctx)
    metadata.db.close()
    return metadata


def test_metadata_takes_the_single_content_plugin(tmp_path: Path) -> None:
    metadata = _init_metadata(tmp_path, _plugins(tmp_path, ["remote"]))
    assert metadata.content is not None and metadata.content.backend.root == tmp_path / "remote"  # type: ignore[attr-defined]
    assert _init_metadata(tmp_path, _plugins(tmp_path, [])).content is None


def test_two_content_plugins_are_fatal_and_named(tmp_path: Path) -> None:
    with pytest.raises(FatalPluginError) as exc:
        _init_metadata(tmp_path, _plugins(tmp_path, ["content", "remote"]))
    message = str(exc.value)
    assert "io.containerd.content.v1.content" in message and "io.containerd.content.v1.remote" in message
    assert "disabled_plugins" in message
