"""Pod networking for the CRI plugin: network namespaces and CNI, as containerd's CRI sets them up.

One :class:`~pycontainerd.cni.CNI` per conf dir: the plugin's ``[cni] conf_dir``, plus one for
each runtime handler that names its own ``cni_conf_dir``. A pod gets a namespace pinned under
``<state>/netns`` (``netns_mounts_under_state_dir``, our default) or ``/var/run/netns``, then
CNI ADD with kubelet's pod arguments, its hostPort mappings, DNS, bandwidth annotations and
cgroup parent. Teardown is CNI DEL (from the CNI cache, so it works after a restart) before the
namespace is removed: the bridge plugin needs the namespace to find what to un-masquerade.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cni import CNI, Bandwidth, CNIError, DNSConfig, PortMapping, create_netns, pod_args
from pycontainerd.cri import userns

if TYPE_CHECKING:
    from pycontainerd.cri import state
    from pycontainerd.cri.config import CRIConfig
    from pycontainerd.snapshots.idmap import IDMap

log = logging.getLogger(__name__)

PROTOCOLS = {api.TCP: "tcp", api.UDP: "udp", api.SCTP: "sctp"}
INGRESS = "kubernetes.io/ingress-bandwidth"
EGRESS = "kubernetes.io/egress-bandwidth"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
_SCALE = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def bandwidth_of(annotations: dict[str, str]) -> Bandwidth | None:
    """The bandwidth capability from kubelet's pod annotations (bits per second; burst unlimited-ish)."""

    def rate(key: str) -> int:
        text = annotations.get(key, "")
        match = _QUANTITY.match(text)
        if not match:
            return 0
        return int(float(match.group(1)) * _SCALE[match.group(2) or ""])

    ingress, egress = rate(INGRESS), rate(EGRESS)
    if not ingress and not egress:
        return None
    burst = (1 << 31) - 1  # as containerd: no burst limit of its own
    return Bandwidth(ingress, burst if ingress else 0, egress, burst if egress else 0)


class PodNetwork:
    """Network namespaces and CNI attachments of pods."""

    def __init__(self, config: CRIConfig, state_dir: Path) -> None:
        self._config = config
        self.netns_dir = state_dir / "netns" if config.netns_mounts_under_state_dir else Path("/var/run/netns")
        self._cache = state_dir / "cni-cache"
        self._default = self._make(config.cni.conf_dir, config.cni.max_conf_num)
        self._by_dir: dict[str, CNI] = {config.cni.conf_dir: self._default}

    def _make(self, conf_dir: str, max_conf_num: int) -> CNI:
        cni = CNI(
            cache_dir=self._cache,
            conf_dir=conf_dir,
            bin_dirs=self._config.cni.plugin_dirs,
            max_conf_num=max_conf_num or 1,
        )
        try:
            cni.load()
        except CNIError as exc:
            # Not fatal: NetworkReady says so, and the conf dir is looked at again on each use.
            log.warning("CNI: %s", exc.message)
        return cni

    def for_handler(self, handler: str) -> CNI:
        """The CNI of a runtime handler: its own conf dir, else the plugin's."""
        try:
            own = self._config.handler(handler)
        except KeyError:
            return self._default
        if not own.cni_conf_dir:
            return self._default
        found = self._by_dir.get(own.cni_conf_dir)
        if found is None:
            found = self._make(own.cni_conf_dir, own.cni_max_conf_num or self._config.cni.max_conf_num)
            self._by_dir[own.cni_conf_dir] = found
        return found

    async def create_netns(self, idmap: IDMap | None = None) -> str:
        """A new network namespace; its pin path. With ``idmap`` (a pod with a user namespace),
        the network namespace is owned by a new user namespace with that map, pinned beside it."""
        if idmap is not None:
            return await userns.create_pod_netns(self.netns_dir, idmap)
        return await create_netns(self.netns_dir)

    async def remove_netns(self, path: str) -> None:
        """Unpin and delete a namespace, and a user namespace pinned with it (idempotent)."""
        if path:
            await asyncio.to_thread(userns.remove_pod_netns_sync, path)

    async def setup(self, pod: state.PodSandbox) -> tuple[str, list[str]]:
        """CNI ADD for a pod; its IP and additional IPs."""
        config = pod.config
        meta = config.metadata
        mappings = [
            PortMapping(m.host_port, m.container_port, PROTOCOLS.get(m.protocol, "tcp"), m.host_ip)
            for m in config.port_mappings
            if m.host_port > 0
        ]
        dns = None
        if config.HasField("dns_config"):
            dns = DNSConfig(
                tuple(config.dns_config.servers), tuple(config.dns_config.searches), tuple(config.dns_config.options)
            )
        result = await self.for_handler(pod.runtime_handler).setup(
            pod.id,
            pod.netns_path,
            args=pod_args(namespace=meta.namespace, name=meta.name, sandbox_id=pod.id, uid=meta.uid),
            port_mappings=mappings,
            bandwidth=bandwidth_of(dict(config.annotations)),
            dns=dns,
            cgroup_path=config.linux.cgroup_parent,
            annotations=dict(config.annotations),
            serially=self._config.cni.setup_serially,
        )
        ip, additional = result.pod_ips(self._config.cni.ip_pref or "ipv4")
        return ip, list(additional)

    async def teardown(self, pod: state.PodSandbox) -> None:
        """CNI DEL for a pod (from the cached ADD; idempotent)."""
        meta = pod.config.metadata
        await self.for_handler(pod.runtime_handler).remove(
            pod.id,
            pod.netns_path,
            args=pod_args(namespace=meta.namespace, name=meta.name, sandbox_id=pod.id, uid=meta.uid),
        )

    def status(self) -> tuple[bool, str, str]:
        """The NetworkReady condition: (ready, reason, message)."""
        ready, reason, message = self._default.status()
        return ready, reason, message

    async def update_pod_cidr(self, cidr: str) -> None:
        """Write the ``conf_template`` for kubelet's pod CIDR when no config is loaded yet."""
        template = self._config.cni.conf_template
        if template:
            await asyncio.to_thread(self._default.update_pod_cidr, cidr, template_path=template)
