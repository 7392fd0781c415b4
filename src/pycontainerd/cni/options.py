"""Per-pod inputs of an attachment: CNI_ARGS labels and capability arguments.

The CRI turns a ``PodSandboxConfig`` into these (containerd's ``cniNamespaceOpts``):
``K8S_POD_*`` labels for ``CNI_ARGS``, port mappings with a host port, bandwidth limits from
the ``kubernetes.io/{ingress,egress}-bandwidth`` annotations, the pod's DNS config and its
cgroup parent. Each is delivered only to plugins that declare the matching capability; the
JSON keys are the ones of the CNI conventions document (``portMappings`` entries are
``{hostPort, containerPort, protocol, hostIP}``, ``bandwidth`` is ``{ingressRate, ...}``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# Capability names (CNI CONVENTIONS.md) and containerd's pod-annotations capability.
CAP_PORT_MAPPINGS = "portMappings"
CAP_BANDWIDTH = "bandwidth"
CAP_IP_RANGES = "ipRanges"
CAP_DNS = "dns"
CAP_ALIASES = "aliases"
CAP_CGROUP_PATH = "cgroupPath"
CAP_POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A host port forwarded to a pod port (``protocol`` is lower-case: tcp, udp, sctp)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        """The ``portMappings`` entry."""
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.lower(),
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Traffic shaping: rates in bits per second, bursts in bits (0 = unset)."""

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``bandwidth`` capability value."""
        return {
            "ingressRate": self.ingress_rate,
            "ingressBurst": self.ingress_burst,
            "egressRate": self.egress_rate,
            "egressBurst": self.egress_burst,
        }


@dataclass(frozen=True, slots=True)
class IPRange:
    """One pool of a ``ipRanges`` allocation (host-local's ``ranges`` entries)."""

    subnet: str
    range_start: str = ""
    range_end: str = ""
    gateway: str = ""

    def to_json(self) -> dict[str, Any]:
        """The range object, empty fields left out."""
        out = {
            "subnet": self.subnet,
            "rangeStart": self.range_start,
            "rangeEnd": self.range_end,
            "gateway": self.gateway,
        }
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """The pod's resolver settings, as the ``dns`` capability."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``dns`` capability value."""
        return {"servers": list(self.servers), "searches": list(self.searches), "options": list(self.options)}


def pod_args(*, namespace: str, name: str, sandbox_id: str, uid: str) -> dict[str, str]:
    """The CNI_ARGS a Kubernetes pod sandbox gets, in containerd's ``toCNILabels`` set.

    Joined by :func:`pycontainerd.cni.invoke.cni_args` this reads
    ``IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..``.
    """
    return {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": namespace,
        "K8S_POD_NAME": name,
        "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
        "K8S_POD_UID": uid,
    }


def capability_args(
    *,
    port_mappings: Sequence[PortMapping] = (),
    bandwidth: Bandwidth | None = None,
    dns: DNSConfig | None = None,
    cgroup_path: str = "",
    ip_ranges: Sequence[Sequence[IPRange]] = (),
    aliases: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The capability arguments of one attachment; unset inputs are left out.

    Port mappings without a host port are dropped (containerd's ``toCNIPortMappings``).
    ``extra`` adds capabilities this module does not name (``mac``, ``ips``, ...).
    """
    caps: dict[str, Any] = {}
    mappings = [m.to_json() for m in port_mappings if m.host_port > 0]
    if mappings:
        caps[CAP_PORT_MAPPINGS] = mappings
    if bandwidth is not None:
        caps[CAP_BANDWIDTH] = bandwidth.to_json()
    if dns is not None:
        caps[CAP_DNS] = dns.to_json()
    if cgroup_path:
        caps[CAP_CGROUP_PATH] = cgroup_path
    if ip_ranges:
        caps[CAP_IP_RANGES] = [[r.to_json() for r in pool] for pool in ip_ranges]
    if aliases:
        caps[CAP_ALIASES] = list(aliases)
    if annotations is not None:
        caps[CAP_POD_ANNOTATIONS] = dict(annotations)
    if extra:
        caps.update(extra)
    return caps
