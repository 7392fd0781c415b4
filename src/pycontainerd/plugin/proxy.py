"""``[proxy_plugins]``: plugins served by other processes over gRPC, registered like built-ins.

A ``snapshot`` proxy becomes ``io.containerd.snapshotter.v1.<name>`` (usable with
``--snapshotter <name>``, wrapped in the metadata like any snapshotter); a ``sandbox`` proxy
becomes the sandbox controller ``<name>`` (``sandboxer = "<name>"``). The remote is not contacted at start-up: a proxy
whose process is not up yet fails its calls with Unavailable, not the daemon's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.config.model import ConfigError
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    from pycontainerd.config.model import ProxyPlugin

SUPPORTED = {"snapshot": types.SNAPSHOT, "sandbox": types.SANDBOX_CONTROLLER}


def proxy_registrations(proxies: dict[str, ProxyPlugin]) -> list[Registration]:
    """Registrations for the ``[proxy_plugins]`` table; ConfigError for an unusable entry."""
    out = []
    for name, proxy in proxies.items():
        where = f"proxy_plugins.{name}"
        if proxy.type not in SUPPORTED:
            raise ConfigError(f"{where}.type: {proxy.type!r} is not supported (supported: {', '.join(SUPPORTED)})")
        if not proxy.address:
            raise ConfigError(f"{where}.address: a unix socket path is required")
        out.append(_snapshot(name, proxy) if proxy.type == "snapshot" else _sandbox(name, proxy))
    return out


def _snapshot(name: str, proxy: ProxyPlugin) -> Registration:
    def init(ctx: InitContext) -> object:
        from pycontainerd.snapshots.proxy import ProxySnapshotter

        ctx.exports.update(proxy.exports)
        ctx.exports["address"] = proxy.address
        ctx.capabilities.extend(proxy.capabilities)
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
