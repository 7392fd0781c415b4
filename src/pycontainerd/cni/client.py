"""The pod network as the CRI plugin sees it (go-cni's ``CNI`` plus containerd's conf syncer).

One :class:`CNI` per conf dir. It loads the networks (loopback first, then the conf dir's),
notices when the conf dir changes (a stat of its entries on every call, where containerd uses
fsnotify) and reloads, and attaches a pod to all networks:

- ``setup``: ADD every network (concurrently, like go-cni's ``Setup``; or in order with
  ``serially``) and merge the results; the pod IP comes from ``eth0``. On failure nothing is
  rolled back: the caller runs ``remove``, as containerd does.
- ``remove``: DEL every network; a netns path that is no longer a namespace becomes "" (the
  spec's "namespace gone"), plugin errors saying "not found" are tolerated as in go-cni, and
  cached attachments of networks no longer configured are deleted with their cached config.
- ``check``: CHECK every network.
- ``status``: ready once enough networks are loaded and every plugin binary exists; the
  reason and message are the CRI ``NetworkReady`` condition's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from pycontainerd.cni import config as cniconfig
from pycontainerd.cni import network as chain
from pycontainerd.cni import template as cnitemplate
from pycontainerd.cni.cache import ResultCache
from pycontainerd.cni.errors import CNIError, NotInitialized, PluginError
from pycontainerd.cni.invoke import DEFAULT_EXEC_TIMEOUT, Invoker, RuntimeConf
from pycontainerd.cni.netns import is_netns
from pycontainerd.cni.options import capability_args
from pycontainerd.cni.results import PluginResult, Result

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence

    from pycontainerd.cni.options import Bandwidth, DNSConfig, IPRange, PortMapping

log = logging.getLogger(__name__)

NOT_READY_REASON = "NetworkPluginNotReady"


class NetworkStatus(NamedTuple):
    """The CRI ``NetworkReady`` condition: ``(ready, reason, message)``."""

    ready: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class _Loaded:
    networks: tuple[chain.Network, ...]
    error: CNIError | None


class CNI:
    """Pod networking over the CNI plugins of one conf dir.

    Args:
        cache_dir: where ADD results are kept for DEL/CHECK (e.g. ``<state>/cni-cache``).
        conf_dir: the network config directory (containerd's ``conf_dir``).
        bin_dirs: plugin binary directories, searched in order (``bin_dirs``).
        max_conf_num: how many config files to use; 0 means all.
        loopback: attach the built-in loopback network first (containerd's default; off is
            its ``use_internal_loopback``).
        if_prefix: interface name prefix: networks become ``eth0``, ``eth1``...
        exec_timeout: seconds a single plugin exec may take.
    """

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str],
        conf_dir: str | os.PathLike[str] = cniconfig.DEFAULT_CONF_DIR,
        bin_dirs: Sequence[str] = cniconfig.DEFAULT_BIN_DIRS,
        max_conf_num: int = cniconfig.DEFAULT_MAX_CONF_NUM,
        loopback: bool = True,
        if_prefix: str = cniconfig.DEFAULT_IF_PREFIX,
        exec_timeout: float = DEFAULT_EXEC_TIMEOUT,
    ) -> None:
        self.conf_dir = os.fspath(conf_dir)
        self.bin_dirs = tuple(bin_dirs)
        self.max_conf_num = max_conf_num
        self.loopback = loopback
        self.if_prefix = if_prefix
        self.cache = ResultCache(cache_dir)
        self.invoker = Invoker(self.bin_dirs, exec_timeout)
        self._min_networks = 2 if loopback else 1
        self._loaded = _Loaded((), NotInitialized())
        self._signature: tuple[Any, ...] | None = None
        self.refresh()  # load now, so a broken conf dir is logged at start-up

    @property
    def default_ifname(self) -> str:
        """The pod's main interface, whose IPs are the pod IPs (``eth0``)."""
        return cniconfig.ifname(0, self.if_prefix)

    @property
    def networks(self) -> tuple[chain.Network, ...]:
        """The networks a pod is attached to, loopback first (reloaded if the conf dir changed)."""
        self.refresh()
        return self._loaded.networks

    @property
    def load_error(self) -> CNIError | None:
        """Why the last load failed (containerd's ``lastCNILoadStatus``), or ``None``."""
        self.refresh()
        return self._loaded.error

    def _conf_signature(self) -> tuple[Any, ...]:
        """What changes when a config file is added, removed or rewritten (cheap: stats only)."""

        def stats(directory: str, depth: int) -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = []
            with os.scandir(directory) as entries:
                for entry in entries:
                    st = entry.stat()
                    found.append((directory, entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
                    if depth and entry.is_dir():  # CNI 1.1 plugin fragments live in <conf dir>/<network>/
                        found += stats(entry.path, depth - 1)
            return found

        try:
            return tuple(sorted(stats(self.conf_dir, 1)))
        except OSError:
            return ("unreadable",)

    def load(self) -> None:
        """Load the networks now, like go-cni's ``Load(WithLoNetwork, WithDefaultConf)``.

        On failure no network is usable until a later load succeeds (go-cni resets first).

        Raises:
            NotInitialized: the conf dir has no config file.
            InvalidConfig: a config file to use is broken.
        """
        self._signature = self._conf_signature()
        try:
            configs = cniconfig.load_dir(self.conf_dir, self.max_conf_num)
        except CNIError as exc:
            error = type(exc)(f"cni config load failed: {exc.message}")
            self._loaded = _Loaded((), error)
            raise error from None
        networks = [chain.Network(cniconfig.loopback_network(), cniconfig.LOOPBACK_IFNAME)] if self.loopback else []
        networks += [chain.Network(c, cniconfig.ifname(i, self.if_prefix)) for i, c in enumerate(configs)]
        self._loaded = _Loaded(tuple(networks), None)
        log.info("cni: loaded networks %s from %s", [n.name for n in networks], self.conf_dir)

    def refresh(self) -> bool:
        """Reload if the conf dir changed since the last load; return whether it reloaded."""
        if self._signature is not None and self._conf_signature() == self._signature:
            return False
        try:
            self.load()
        except CNIError as exc:
            log.warning("cni: %s", exc)
        return True

    def _ready_networks(self) -> tuple[chain.Network, ...]:
        """The loaded networks, or raise why there are not enough of them (go-cni's ``ready``)."""
        loaded = self.networks
        if len(loaded) < self._min_networks:
            raise self._loaded.error or NotInitialized()
        return loaded

    def status(self) -> NetworkStatus:
        """The ``NetworkReady`` condition: configs loaded and every plugin binary present."""
        try:
            for net in self._ready_networks():
                for plugin_type in net.config.plugin_types:
                    cniconfig.find_plugin(plugin_type, self.bin_dirs)
        except CNIError as exc:
            return NetworkStatus(False, NOT_READY_REASON, f"Network plugin returns error: {exc.message}")
        return NetworkStatus(True, "", "")

    async def plugin_status(self) -> None:
        """Ask the plugins of every 1.1.0 network whether they can serve ADD (CNI ``STATUS``).

        Raises:
            NotInitialized, InvalidConfig: no usable config.
            PluginError: a plugin is not ready.
        """
        for net in self._ready_networks():
            await chain.status(self.invoker, net.config)

    async def setup(
        self,
        sandbox_id: str,
        netns_path: str,
        *,
        args: Mapping[str, str] | None = None,
        port_mappings: Sequence[PortMapping] = (),
        bandwidth: Bandwidth | None = None,
        dns: DNSConfig | None = None,
        cgroup_path: str = "",
        ip_ranges: Sequence[Sequence[IPRange]] = (),
        annotations: Mapping[str, str] | None = None,
        capabilities: Mapping[str, Any] | None = None,
        serially: bool = False,
    ) -> Result:
        """Attach the pod's namespace to every network (CNI ADD) and return the merged result.

        Args:
            sandbox_id: ``CNI_CONTAINERID``.
            netns_path: the pinned namespace (:func:`pycontainerd.cni.netns.create_netns`).
            args: ``CNI_ARGS`` pairs, e.g. :func:`pycontainerd.cni.options.pod_args`.
            port_mappings: ``portMappings`` (only those with a host port are passed).
            bandwidth: ``bandwidth``.
            dns: ``dns``.
            cgroup_path: ``cgroupPath``.
            ip_ranges: ``ipRanges``.
            annotations: the pod annotations (``io.kubernetes.cri.pod-annotations``).
            capabilities: any other capability arguments, by name.
            serially: one network after the other (containerd's ``setup_serially``).

        Raises:
            NotInitialized, InvalidConfig: no usable network config.
            PluginError, PluginNotFound, PluginTimeout, InvalidResult: a plugin failed; call
                :meth:`remove` to undo what the others did.
        """
        networks = self._ready_networks()
        pairs = tuple((args or {}).items())
        caps = capability_args(
            port_mappings=port_mappings,
            bandwidth=bandwidth,
            dns=dns,
            cgroup_path=cgroup_path,
            ip_ranges=ip_ranges,
            annotations=annotations,
            extra=capabilities,
        )
        jobs = [
            chain.add(self.invoker, self.cache, n.config, RuntimeConf(sandbox_id, netns_path, n.ifname, pairs, caps))
            for n in networks
        ]
        results = await _run_all(jobs, serially)
        return Result.merge(results, self.default_ifname)

    async def remove(
        self,
        sandbox_id: str,
        netns_path: str,
        *,
        args: Mapping[str, str] | None = None,
        port_mappings: Sequence[PortMapping] = (),
        bandwidth: Bandwidth | None = None,
        dns: DNSConfig | None = None,
        cgroup_path: str = "",
        ip_ranges: Sequence[Sequence[IPRange]] = (),
        annotations: Mapping[str, str] | None = None,
        capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        """Detach the pod from every network (CNI DEL, plugins in reverse order); idempotent.

        Takes the same keywords as :meth:`setup`; when the cache holds the ADD's record, its
        CNI_ARGS and capability arguments are used instead, so after a restart the caller may
        pass only the sandbox ID and netns path. Attachments cached for networks that are not
        configured any more (or when no config is usable at all) are deleted with the config
        they were added with.

        Raises:
            NotInitialized, InvalidConfig: no usable network config.
            PluginError, PluginNotFound, PluginTimeout: a plugin could not clean up.
        """
        try:
            networks = self._ready_networks()
        except CNIError:
            if not self.cache.attachments(sandbox_id):
                raise
            networks = ()  # no usable config now, but the cache knows what ADD did
        pairs = tuple((args or {}).items())
        caps = capability_args(
            port_mappings=port_mappings,
            bandwidth=bandwidth,
            dns=dns,
            cgroup_path=cgroup_path,
            ip_ranges=ip_ranges,
            annotations=annotations,
            extra=capabilities,
        )
        netns = netns_path if netns_path and is_netns(netns_path) else ""
        for net in networks:
            rt = RuntimeConf(sandbox_id, netns, net.ifname, pairs, caps)
            try:
                await chain.delete(self.invoker, self.cache, net.config, rt)
            except PluginError as exc:
                # go-cni: a plugin that cannot find what it should remove has nothing left to do.
                if "not found" in exc.message or (not netns and "no such file or directory" in exc.message):
                    log.info("cni: ignoring DEL error of %s for %s: %s", net.name, sandbox_id, exc)
                    continue
                raise
        await self._remove_cached(sandbox_id, netns, {(n.name, n.ifname) for n in networks}, strict=not networks)

    async def _remove_cached(self, sandbox_id: str, netns: str, current: set[tuple[str, str]], *, strict: bool) -> None:
        """DEL cached attachments of networks not (or no longer) configured, with their cached config.

        Failures are only logged unless ``strict`` (there is no current config at all): a
        network that left the conf dir, perhaps with its plugin, must not block a pod's removal.
        """
        for record in self.cache.attachments(sandbox_id):
            if (record.network, record.ifname) in current:
                continue
            try:
                old = cniconfig.parse_conflist(record.config, f"cached config of {record.network}")
                rt = RuntimeConf(sandbox_id, netns, record.ifname, record.cni_args, record.capability_args)
                await chain.delete(self.invoker, self.cache, old, rt)
            except CNIError as exc:
                if strict:
                    raise
                log.warning("cni: DEL of stale attachment %s/%s failed: %s", record.network, sandbox_id, exc)

    async def check(self, sandbox_id: str, netns_path: str, *, args: Mapping[str, str] | None = None) -> None:
        """Ask every network's plugins whether the pod's networking is still as ADD left it.

        Raises:
            Unimplemented: a network's version predates CHECK (0.4.0).
            FailedPrecondition: the pod was never set up (no cached result).
            PluginError: a plugin found a problem.
        """
        for net in self._ready_networks():
            rt = RuntimeConf(sandbox_id, netns_path, net.ifname, tuple((args or {}).items()))
            await chain.check(self.invoker, self.cache, net.config, rt)

    def update_pod_cidr(self, pod_cidr: str, *, template_path: str = "", default_bridge: bool = False) -> str:
        """Write a network config for the node's pod CIDR if none is usable (CRI ``UpdateRuntimeConfig``).

        Like containerd: nothing happens while a config is loaded (or loads now); otherwise
        ``template_path`` (containerd's ``conf_template``) is rendered, or with
        ``default_bridge`` :func:`~pycontainerd.cni.template.default_bridge_conflist`, into
        ``<conf dir>/10-containerd-net.conflist``, and loaded.

        Returns:
            the path written, or "" if nothing was.

        Raises:
            InvalidConfig: the template cannot be rendered into a valid config.
            ValueError: ``pod_cidr`` is not a list of CIDRs.
        """
        if not pod_cidr.strip() or not (template_path or default_bridge):
            return ""
        if self.status().ready:
            return ""
        self.refresh()
        if self._loaded.error is None:
            return ""
        if template_path:
            content = cnitemplate.render_file(template_path, pod_cidr)
        else:
            content = cnitemplate.default_bridge_conflist(pod_cidr)
        path = cnitemplate.write_conf_file(self.conf_dir, content)
        log.info("cni: wrote %s for pod CIDR %s", path, pod_cidr)
        self.refresh()
        return str(path)

    def config_info(self) -> dict[str, Any]:
        """go-cni's ``GetConfig``: what CRI ``Status(verbose)`` reports as ``cniconfig``."""
        return {
            "PluginDirs": list(self.bin_dirs),
            "PluginConfDir": self.conf_dir,
            "PluginMaxConfNum": self.max_conf_num,
            "Prefix": self.if_prefix,
            "Networks": [
                {
                    "Config": {
                        "Name": n.name,
                        "CNIVersion": n.config.cni_version,
                        "Plugins": [{"Network": p.conf, "Source": json.dumps(p.conf)} for p in n.config.plugins],
                        "Source": n.config.raw.decode(errors="replace"),
                    },
                    "IFName": n.ifname,
                }
                for n in self.networks
            ],
        }


async def _run_all(jobs: Sequence[Awaitable[PluginResult]], serially: bool) -> list[PluginResult]:
    """Await the jobs in order or together; like go-cni, all finish before the first error is raised."""
    if serially:
        return [await job for job in jobs]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, PluginResult)]
