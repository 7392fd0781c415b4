"""CNI results: parse what plugins print, merge the networks' results, pick the pod IPs.

A plugin's ADD result (spec section 5) lists the interfaces it made (host side and in the
sandbox), the IPs with an index into that list, routes and DNS. Versions differ in details:
0.3.x/0.4.0 tag each IP with ``"version": "4"|"6"``; 1.0.0 drops that and adds ``mtu``,
``socketPath``, ``pciID`` on interfaces and ``mtu``/``advmss``/``priority``/``table``/``scope``
on routes. :class:`PluginResult` reads any of them and writes any of them (a cached result
must be handed back as ``prevResult`` in the config's version).

:class:`Result` is go-cni's merged view over all networks of a pod: per interface name the
MAC, sandbox and IPs (an IP without an interface index belongs to ``eth0``), plus all routes
and DNS entries. The pod IP is taken from ``eth0`` as containerd's ``selectPodIPs`` does.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pycontainerd.cni.config import at_least, version_key
from pycontainerd.cni.errors import InvalidResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPPreference = Literal["ipv4", "ipv6", "cni", ""]

_ROUTE_INTS = ("mtu", "advmss", "priority", "table", "scope")


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface an attachment created; ``sandbox`` is the netns path, "" on the host."""

    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass(frozen=True, slots=True)
class IPConfig:
    """An address (with prefix length), its gateway and the index of its interface."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    @property
    def ip(self) -> IPAddress:
        """The address without its prefix length."""
        return self.address.ip


@dataclass(frozen=True, slots=True)
class Route:
    """A route; the 1.0.0 fields are ``None`` when absent."""

    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


@dataclass(frozen=True, slots=True)
class DNS:
    """Resolver settings a plugin reports."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The spec's JSON object, empty fields left out."""
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidResult(f"invalid result: {what} must be a list of strings")
    return tuple(value)


def _parse_dns(raw: Any) -> DNS:
    if raw is None:
        return DNS()
    if not isinstance(raw, dict):
        raise InvalidResult("invalid result: dns must be an object")
    return DNS(
        _strings(raw.get("nameservers"), "dns.nameservers"),
        str(raw.get("domain") or ""),
        _strings(raw.get("search"), "dns.search"),
        _strings(raw.get("options"), "dns.options"),
    )


def _parse_interface(raw: Any) -> Interface:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidResult(f"invalid result: interface {raw!r} has no name")
    return Interface(
        raw["name"],
        str(raw.get("mac") or ""),
        int(raw.get("mtu") or 0),
        str(raw.get("sandbox") or ""),
        str(raw.get("socketPath") or ""),
        str(raw.get("pciID") or ""),
    )


def _parse_ip(raw: Any) -> IPConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("address"), str):
        raise InvalidResult(f"invalid result: IP {raw!r} has no address")
    try:
        address = ipaddress.ip_interface(raw["address"])
        gateway = ipaddress.ip_address(raw["gateway"]) if raw.get("gateway") else None
    except ValueError as exc:
        raise InvalidResult(f"invalid result: {exc}") from None
    index = raw.get("interface")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise InvalidResult(f"invalid result: interface index {index!r}")
    return IPConfig(address, gateway, index)


def _parse_route(raw: Any) -> Route:
    if not isinstance(raw, dict) or not isinstance(raw.get("dst"), str):
        raise InvalidResult(f"invalid result: route {raw!r} has no dst")
    try:
        dst = ipaddress.ip_network(raw["dst"], strict=False)
        gw = ipaddress.ip_address(raw["gw"]) if raw.get("gw") else None
    except ValueError as exc:
        raise InvalidResult(f"invalid result: {exc}") from None
    extra = {k: int(raw[k]) for k in _ROUTE_INTS if raw.get(k) is not None}
    return Route(dst, gw, **extra)


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidResult(f"invalid result: {key} must be a list")
    return value


@dataclass(frozen=True, slots=True)
class PluginResult:
    """The result of one network's ADD (the last plugin of its chain)."""

    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def from_dict(cls, raw: Any, default_version: str = "") -> PluginResult:
        """Parse a result object of version 0.3.0 to 1.1.0.

        Args:
            raw: the decoded JSON.
            default_version: the version to assume when the result has no ``cniVersion``
                (libcni uses the config's).

        Raises:
            InvalidResult: not a result, an older format, or bad addresses.
        """
        if not isinstance(raw, dict):
            raise InvalidResult("invalid result: not a JSON object")
        version = raw.get("cniVersion") or default_version
        try:
            supported = isinstance(version, str) and at_least(version, "0.3.0")
        except ValueError:
            supported = False
        if not supported:
            raise InvalidResult(f"unsupported result version {version!r}")
        return cls(
            version,
            tuple(_parse_interface(i) for i in _list(raw, "interfaces")),
            tuple(_parse_ip(i) for i in _list(raw, "ips")),
            tuple(_parse_route(r) for r in _list(raw, "routes")),
            _parse_dns(raw.get("dns")),
        )

    @classmethod
    def from_bytes(cls, data: bytes, default_version: str = "") -> PluginResult:
        """Parse a plugin's stdout.

        Raises:
            InvalidResult: not JSON, or as :meth:`from_dict`.
        """
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidResult(f"invalid result: {exc}") from None
        return cls.from_dict(raw, default_version)

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The result as JSON in ``version`` (default: its own); what plugins get as ``prevResult``."""
        version = version or self.cni_version
        modern = version_key(version) >= (1, 0, 0)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_interface_dict(i, modern) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_dict(i, modern) for i in self.ips]
        if self.routes:
            out["routes"] = [_route_dict(r, modern) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out


def _interface_dict(intf: Interface, modern: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": intf.name}
    if intf.mac:
        out["mac"] = intf.mac
    if modern and intf.mtu:
        out["mtu"] = intf.mtu
    if intf.sandbox:
        out["sandbox"] = intf.sandbox
    if modern and intf.socket_path:
        out["socketPath"] = intf.socket_path
    if modern and intf.pci_id:
        out["pciID"] = intf.pci_id
    return out


def _ip_dict(ip: IPConfig, modern: bool) -> dict[str, Any]:
    out: dict[str, Any] = {} if modern else {"version": str(ip.address.version)}
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _route_dict(route: Route, modern: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if modern:
        out.update({k: getattr(route, k) for k in _ROUTE_INTS if getattr(route, k) is not None})
    return out


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """go-cni's per-interface view: its addresses (with gateways) and identity."""

    ips: tuple[tuple[IPAddress, IPAddress | None], ...] = ()
    mac: str = ""
    sandbox: str = ""
    pci_id: str = ""
    socket_path: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """What a pod's networks set up, merged; the CRI keeps it with the sandbox.

    Attributes:
        interfaces: per interface name (``eth0`` always present, maybe without IPs).
        dns: each network's DNS settings, in network order.
        routes: all networks' routes.
        raw: each network's own result, in network order (loopback first).
        default_ifname: the pod's main interface (``eth0``).
    """

    interfaces: dict[str, InterfaceConfig]
    dns: tuple[DNS, ...]
    routes: tuple[Route, ...]
    raw: tuple[PluginResult, ...]
    default_ifname: str = "eth0"

    @classmethod
    def merge(cls, results: list[PluginResult] | tuple[PluginResult, ...], default_ifname: str = "eth0") -> Result:
        """Merge network results like go-cni's ``createResult``.

        Raises:
            InvalidResult: an IP names an interface index its result does not have.
        """
        identity: dict[str, Interface] = {default_ifname: Interface(default_ifname)}
        addrs: dict[str, list[tuple[IPAddress, IPAddress | None]]] = {default_ifname: []}
        for result in results:
            for intf in result.interfaces:
                identity[intf.name] = intf
                addrs[intf.name] = []  # a later network re-creating a name replaces it, as in go-cni
            for ip in result.ips:
                if ip.interface is not None and ip.interface >= len(result.interfaces):
                    raise InvalidResult(
                        f"invalid result: IP {ip.address} names interface {ip.interface} of {len(result.interfaces)}"
                    )
                name = default_ifname if ip.interface is None else result.interfaces[ip.interface].name
                addrs[name].append((ip.ip, ip.gateway))
        interfaces = {
            name: InterfaceConfig(tuple(addrs[name]), intf.mac, intf.sandbox, intf.pci_id, intf.socket_path)
            for name, intf in identity.items()
        }
        return cls(
            interfaces,
            tuple(r.dns for r in results),
            tuple(route for r in results for route in r.routes),
            tuple(results),
            default_ifname,
        )

    def pod_ips(self, preference: IPPreference | str = "ipv4") -> tuple[str, list[str]]:
        """``(pod IP, additional IPs)`` from the default interface, as containerd picks them.

        ``ipv4`` (or "" or anything unknown): the first IPv4 address, the others after it
        in their order; ``ipv6``: the same with IPv6; ``cni``: the plugin's order.

        Raises:
            InvalidResult: the default interface has no address.
        """
        ips = [str(ip) for ip, _ in self.interfaces[self.default_ifname].ips]
        if not ips:
            raise InvalidResult(f"no IP address on {self.default_ifname} in the CNI result")
        return select_pod_ips(ips, preference)

    def to_dict(self) -> dict[str, Any]:
        """JSON for storing with the sandbox; :meth:`from_dict` reads it back."""
        return {
            "defaultInterface": self.default_ifname,
            "interfaces": {
                name: {
                    "ips": [{"ip": str(ip), "gateway": str(gw) if gw else ""} for ip, gw in cfg.ips],
                    "mac": cfg.mac,
                    "sandbox": cfg.sandbox,
                }
                for name, cfg in self.interfaces.items()
            },
            "raw": [r.to_dict() for r in self.raw],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Result:
        """Rebuild a result saved by :meth:`to_dict`."""
        return cls.merge([PluginResult.from_dict(r) for r in raw.get("raw", [])], raw.get("defaultInterface", "eth0"))


def select_pod_ips(ips: list[str], preference: IPPreference | str = "ipv4") -> tuple[str, list[str]]:
    """containerd's ``selectPodIPs`` over address strings (at least one)."""
    if len(ips) == 1:
        return ips[0], []
    if preference != "cni":
        want = 6 if preference == "ipv6" else 4
        for i, ip in enumerate(ips):
            if ipaddress.ip_address(ip).version == want:
                return ip, ips[:i] + ips[i + 1 :]
    return ips[0], ips[1:]
