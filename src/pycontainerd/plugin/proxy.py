"""``[proxy_plugins]``: plugins served by other processes over gRPC, registered like built-ins.

* ``snapshot`` becomes ``io.containerd.snapshotter.v1.<name>`` (usable with
  ``--snapshotter <name>``, wrapped in the metadata like any snapshotter);
* ``sandbox`` becomes the sandbox controller ``<name>`` (``sandboxer = "<name>"``);
* ``content`` becomes ``io.containerd.content.v1.<name>``, the blob store under the metadata
  (which takes exactly one content plugin: disable the built-in
  ``io.containerd.content.v1.content`` to use a proxy);
* ``diff`` becomes ``io.containerd.differ.v1.<name>``, used when named in the diff service's
  ``default`` order (``[plugins."io.containerd.service.v1.diff-service"]``).

The type may also be given as the full type URI (``io.containerd.content.v1``...), as
containerd accepts. The remote is not contacted at start-up: a proxy whose process is not up
yet fails its calls with Unavailable, not the daemon's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.config.model import ConfigError
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontainerd.config.model import ProxyPlugin

SUPPORTED = {
    "snapshot": types.SNAPSHOT,
    "sandbox": types.SANDBOX_CONTROLLER,
    "content": types.CONTENT,
    "diff": types.DIFF,
}
_BY_URI = {uri: short for short, uri in SUPPORTED.items()}


def proxy_registrations(proxies: dict[str, ProxyPlugin]) -> list[Registration]:
    """Registrations for the ``[proxy_plugins]`` table; ConfigError for an unusable entry."""
    out = []
    for name, proxy in proxies.items():
        where = f"proxy_plugins.{name}"
        kind = _BY_URI.get(proxy.type, proxy.type)
        if kind not in SUPPORTED:
            raise ConfigError(f"{where}.type: {proxy.type!r} is not supported (supported: {', '.join(SUPPORTED)})")
        if not proxy.address:
            raise ConfigError(f"{where}.address: a unix socket path is required")
        out.append(_MAKERS[kind](name, proxy))
    return out


def _exports(ctx: InitContext, proxy: ProxyPlugin) -> None:
    ctx.exports.update(proxy.exports)
    ctx.exports["address"] = proxy.address
    ctx.capabilities.extend(proxy.capabilities)


def _snapshot(name: str, proxy: ProxyPlugin) -> Registration:
    def init(ctx: InitContext) -> object:
        from pycontainerd.snapshots.proxy import ProxySnapshotter

        _exports(ctx, proxy)
        snapshotter = ProxySnapshotter(proxy.address, name)
        ctx.on_close.append(snapshotter.close)
        return snapshotter

    return Registration(type=SUPPORTED["snapshot"], id=name, init=init)


def _sandbox(name: str, proxy: ProxyPlugin) -> Registration:
    def init(ctx: InitContext) -> object:
        from pycontainerd.sandbox.proxy import RemoteSandboxController

        ctx.exports.update(proxy.exports)
        ctx.exports["address"] = proxy.address
        # The remote may know its controller by another name (exports.sandboxer).
        remote_name = proxy.exports.get("sandboxer", name)
        return RemoteSandboxController(proxy.address, remote_name, ctx.plugins.first(types.METADATA))

    return Registration(type=SUPPORTED["sandbox"], id=name, init=init, requires=(types.METADATA,))


def _content(name: str, proxy: ProxyPlugin) -> Registration:
    def init(ctx: InitContext) -> object:
        from pycontainerd.content.proxy import ProxyContentStore

        _exports(ctx, proxy)
        store = ProxyContentStore(proxy.address)
        ctx.on_close.append(store.close)
        return store

    return Registration(type=SUPPORTED["content"], id=name, init=init)


def _diff(name: str, proxy: ProxyPlugin) -> Registration:
    def init(ctx: InitContext) -> object:
        from pycontainerd.diff.proxy import ProxyDiffer

        _exports(ctx, proxy)
        differ = ProxyDiffer(proxy.address, name)
        ctx.on_close.append(differ.close)
        return differ

    return Registration(type=SUPPORTED["diff"], id=name, init=init)


_MAKERS: dict[str, Callable[[str, ProxyPlugin], Registration]] = {
    "snapshot": _snapshot,
    "sandbox": _sandbox,
    "content": _content,
    "diff": _diff,
}
