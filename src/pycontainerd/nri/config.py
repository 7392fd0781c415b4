"""``[plugins."io.containerd.nri.v1.nri"]``: NRI's configuration, with containerd 2's keys.

Example::

    [plugins."io.containerd.nri.v1.nri"]
      disable = false
      disable_connections = false
      plugin_config_path = "/etc/nri/conf.d"
      plugin_path = "/opt/nri/plugins"
      plugin_registration_timeout = "5s"
      plugin_request_timeout = "2s"
      socket_path = "/run/pycontainerd/nri.sock"

Only ``socket_path`` differs from containerd (``/var/run/nri/nri.sock``) so that a real
containerd on the same host keeps its socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycontainerd.cri.config import parse_duration

PLUGIN_TYPE = "io.containerd.nri.v1"
PLUGIN_ID = "nri"
PLUGIN_KEY = f'plugins."{PLUGIN_TYPE}.{PLUGIN_ID}"'

DEFAULT_SOCKET_PATH = "/run/pycontainerd/nri.sock"
DEFAULT_PLUGIN_PATH = "/opt/nri/plugins"
DEFAULT_PLUGIN_CONFIG_PATH = "/etc/nri/conf.d"


@dataclass(slots=True)
class NRIConfig:
    """NRI settings.

    Attributes:
        disable: Turn NRI off altogether (containerd 2 enables it by default).
        disable_connections: Do not listen on ``socket_path``; only launched plugins run.
        plugin_config_path: Drop-in directory with ``<idx>-<name>.conf`` / ``<name>.conf``.
        plugin_path: Directory of plugins launched at start (executables named ``NN-name``).
        plugin_registration_timeout: Go duration a plugin has to register.
        plugin_request_timeout: Go duration a plugin has for each request.
        socket_path: Unix socket where external plugins connect.
    """

    disable: bool = False
    disable_connections: bool = False
    plugin_config_path: str = DEFAULT_PLUGIN_CONFIG_PATH
    plugin_path: str = DEFAULT_PLUGIN_PATH
    plugin_registration_timeout: str = "5s"
    plugin_request_timeout: str = "2s"
    socket_path: str = DEFAULT_SOCKET_PATH

    def __post_init__(self) -> None:
        # Validate the durations up front, so a typo fails at start-up.
        _ = self.registration_timeout, self.request_timeout

    @property
    def registration_timeout(self) -> float:
        """``plugin_registration_timeout`` in seconds (0 in the file means the 5 s default)."""
        return parse_duration(self.plugin_registration_timeout, f"{PLUGIN_KEY}.plugin_registration_timeout") or 5.0

    @property
    def request_timeout(self) -> float:
        """``plugin_request_timeout`` in seconds (0 in the file means the 2 s default)."""
        return parse_duration(self.plugin_request_timeout, f"{PLUGIN_KEY}.plugin_request_timeout") or 2.0
