"""Dataclasses of the top-level configuration and its defaults.

Defaults are chosen so that pycontainerd never collides with a real containerd on the same
host: its own root, state and socket paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_ROOT = "/var/lib/pycontainerd"
DEFAULT_STATE = "/run/pycontainerd"
DEFAULT_ADDRESS = "/run/pycontainerd/pycontainerd.sock"
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20
CONFIG_VERSION = 2
SUPPORTED_VERSIONS = (2, 3)


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the offending key."""


@dataclass(slots=True)
class GRPCConfig:
    """``[grpc]``: the main API listener."""

    address: str = DEFAULT_ADDRESS
    tcp_address: str = ""
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_send_message_size: int = DEFAULT_MAX_MESSAGE_SIZE


@dataclass(slots=True)
class TTRPCConfig:
    """``[ttrpc]``: the listener shims publish events to (default ``<grpc address>.ttrpc``)."""

    address: str = ""
    uid: int = 0
    gid: int = 0


@dataclass(slots=True)
class DebugConfig:
    """``[debug]``: logging."""

    address: str = ""
    uid: int = 0
    gid: int = 0
    level: str = "info"
    format: str = "text"


@dataclass(slots=True)
class MetricsConfig:
    """``[metrics]``: the Prometheus endpoint (off when address is empty)."""

    address: str = ""
    grpc_histogram: bool = False


@dataclass(slots=True)
class CgroupConfig:
    """``[cgroup]``: where the daemon places itself."""

    path: str = ""


@dataclass(slots=True)
class ProxyPlugin:
    """``[proxy_plugins.<name>]``: a plugin served by another process over gRPC."""

    type: str = ""
    """``snapshot``, ``sandbox``, ``content`` or ``diff`` (what the other process serves)."""
    address: str = ""
    """Its unix socket."""
    platform: str = ""
    capabilities: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Config:
    """The whole configuration.

    ``plugins`` keeps each plugin's raw table keyed by ``<type>.<id>``; the server decodes it
    against the plugin's own config class when the plugin starts, so a plugin's defaults live
    with the plugin.
    """

    version: int = CONFIG_VERSION
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    temp: str = ""
    plugin_dir: str = ""
    oom_score: int = 0
    imports: list[str] = field(default_factory=list)
    disabled_plugins: list[str] = field(default_factory=list)
    required_plugins: list[str] = field(default_factory=list)
    grpc: GRPCConfig = field(default_factory=GRPCConfig)
    ttrpc: TTRPCConfig = field(default_factory=TTRPCConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cgroup: CgroupConfig = field(default_factory=CgroupConfig)
    timeouts: dict[str, str] = field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy_plugins: dict[str, ProxyPlugin] = field(default_factory=dict)

    @property
    def ttrpc_address(self) -> str:
        """The ttrpc socket path, defaulting to ``<grpc address>.ttrpc`` as containerd does."""
        return self.ttrpc.address or f"{self.grpc.address}.ttrpc"


# Keys containerd accepts that pycontainerd reads but does not act on yet; they are accepted
# quietly (a warning would make every real containerd config noisy).
ACCEPTED_TOP_LEVEL = frozenset({"stream_processors"})
