"""One network attached to one container: the ADD, DEL and CHECK chains (spec section 3).

This is libcni's ``AddNetworkList``/``DelNetworkList``/``CheckNetworkList`` with its cache:

- ADD runs the plugins in order, each getting the previous one's result as ``prevResult``;
  the last result is written to the cache and returned. The first failure stops the chain
  (the caller must still DEL: plugins may have done part of the work).
- DEL runs the plugins in reverse order; from 0.4.0 on each gets the cached ADD result as
  ``prevResult``. When the cache has a record, DEL also reuses the ADD's CNI_ARGS and
  capability arguments (the spec wants the same attachment parameters, and after a daemon
  restart the caller may not have them), then the record is dropped.
- CHECK (0.4.0 and later, unless ``disableCheck``) runs the plugins in order with the cached
  ADD result as ``prevResult`` and, like DEL, the ADD's arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pycontainerd.cni.config import at_least
from pycontainerd.cni.errors import InvalidResult
from pycontainerd.cni.results import PluginResult
from pycontainerd.errdefs import FailedPrecondition, Unimplemented

if TYPE_CHECKING:
    from pycontainerd.cni.cache import CachedAttachment, ResultCache
    from pycontainerd.cni.config import NetworkConfList
    from pycontainerd.cni.invoke import Invoker, RuntimeConf

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Network:
    """A network config bound to the interface name it is attached as.

    Attributes:
        config: the network.
        ifname: ``lo`` for the loopback network, else ``eth0``, ``eth1``... in load order.
    """

    config: NetworkConfList
    ifname: str

    @property
    def name(self) -> str:
        """The network's name."""
        return self.config.name


def _prev_result(network: NetworkConfList, cached: CachedAttachment | None) -> dict[str, Any] | None:
    """The cached ADD result in the network's version, or ``None`` (before 0.4.0, or no record)."""
    if cached is None or cached.result is None or not at_least(network.cni_version, "0.4.0"):
        return None
    if cached.result.get("cniVersion") == network.cni_version:
        return cached.result
    try:
        return PluginResult.from_dict(cached.result, network.cni_version).to_dict(network.cni_version)
    except InvalidResult as exc:
        log.warning("dropping unusable cached CNI result of %s/%s: %s", network.name, cached.container_id, exc)
        return None


async def add(invoker: Invoker, cache: ResultCache, network: NetworkConfList, rt: RuntimeConf) -> PluginResult:
    """ADD ``network`` for the attachment ``rt`` and cache the result.

    Raises:
        InvalidArgument: bad container ID or interface name.
        PluginError, PluginNotFound, PluginTimeout, InvalidResult: from a plugin of the chain.
    """
    rt.validate()
    raw: dict[str, Any] | None = None
    result: PluginResult | None = None
    for plugin in network.plugins:
        raw, result = await invoker.add(network, plugin, raw, rt)
    assert raw is not None and result is not None  # a network has at least one plugin
    cache.put(network.name, network.raw, rt, raw)
    return result


def with_cached_args(cached: CachedAttachment | None, rt: RuntimeConf) -> RuntimeConf:
    """``rt`` with the CNI_ARGS and capability arguments of the cached ADD, when there is one."""
    if cached is None:
        return rt
    return replace(rt, args=cached.cni_args or rt.args, capability_args=cached.capability_args)


async def delete(invoker: Invoker, cache: ResultCache, network: NetworkConfList, rt: RuntimeConf) -> None:
    """DEL ``network`` for the attachment ``rt``; the cache record goes once all plugins agreed.

    Raises:
        InvalidArgument: bad container ID or interface name.
        PluginError, PluginNotFound, PluginTimeout: from a plugin (the record is kept, so a
            retry gets the same ``prevResult``).
    """
    rt.validate()
    cached = cache.get(network.name, rt.container_id, rt.ifname)
    prev = _prev_result(network, cached)
    rt = with_cached_args(cached, rt)
    for plugin in reversed(network.plugins):
        await invoker.delete(network, plugin, prev, rt)
    cache.delete(network.name, rt.container_id, rt.ifname)


async def check(invoker: Invoker, cache: ResultCache, network: NetworkConfList, rt: RuntimeConf) -> None:
    """CHECK ``network`` for the attachment ``rt``.

    Raises:
        InvalidArgument: bad container ID or interface name.
        Unimplemented: the network's version predates CHECK (0.4.0).
        FailedPrecondition: no cached ADD result (the spec forbids CHECK before ADD).
        PluginError, PluginNotFound, PluginTimeout: a plugin found a problem.
    """
    if not at_least(network.cni_version, "0.4.0"):
        raise Unimplemented(f"configuration version {network.cni_version!r} does not support the CHECK command")
    if network.disable_check:
        return
    rt.validate()
    cached = cache.get(network.name, rt.container_id, rt.ifname)
    prev = _prev_result(network, cached)
    if prev is None:
        raise FailedPrecondition(f"network {network.name!r} has no ADD result for {rt.container_id} ({rt.ifname})")
    rt = with_cached_args(cached, rt)
    for plugin in network.plugins:
        await invoker.check(network, plugin, prev, rt)


async def status(invoker: Invoker, network: NetworkConfList) -> None:
    """STATUS every plugin of a 1.1.0 network (older ones have no STATUS: always fine).

    Raises:
        PluginError: the first plugin that is not ready (code 50 or 51 by the spec).
    """
    if not at_least(network.cni_version, "1.1.0"):
        return
    for plugin in network.plugins:
        await invoker.status(network, plugin)
