"""NRI, the Node Resource Interface: runtime side (containerd's adaptation) and a plugin SDK.

NRI lets out-of-process plugins watch and adjust pods and containers as the CRI plugin
creates, starts, updates, stops and removes them. Wire-compatible with
github.com/containerd/nri (plugins written with its Go stub work with us, and ours with
containerd).

Layers, bottom up:

* :mod:`.mux` - sans-I/O framing and an asyncio driver that carries two ttrpc connections
  (Plugin service on id 1, Runtime service on id 2) over one unix socket connection.
* :mod:`.api` - service names, env variables, event masks, plugin names, ``-`` markers;
  messages are the generated ``pycontainerd.api.nri.api_pb2`` (``api.pb``).
* :mod:`.builders`, :mod:`.adjust` - build messages from plain values: pods and containers
  (runtime side), adjustments and updates (plugin side).
* :mod:`.owners`, :mod:`.result`, :mod:`.updates` - merge the answers of several plugins; two plugins
  setting the same field is a :class:`ConflictError` naming both.
* :mod:`.spec` - :func:`apply_adjustment` applies a merged adjustment to an OCI spec dict.
* :mod:`.connection`, :mod:`.launch`, :mod:`.adaptation` - the runtime: one
  :class:`~.connection.PluginConnection` per plugin (registration, Configure, timeouts,
  dropping dead plugins), launching ``plugin_path`` executables with fd 3, and
  :class:`Adaptation`, the API the CRI plugin calls.
* :mod:`.plugin` - the SDK: subclass :class:`Plugin`, override hooks, :func:`run_plugin`.
"""

from __future__ import annotations

from .adaptation import Adaptation, StateProvider
from .adjust import Adjustment, container_update
from .api import Event, pb
from .builders import container, hook, linux_resources, mount, pod_sandbox
from .config import NRIConfig
from .connection import UpdateCallback
from .errors import NRIError, PluginError, RegistrationError, ValidationError
from .owners import ConflictError
from .plugin import Plugin
from .result import CreateContainerResult, UpdateContainerResult
from .runner import run_plugin
from .spec import SpecAdjustError, apply_adjustment
from .updates import UpdateError

__all__ = [
    "Adaptation",
    "Adjustment",
    "ConflictError",
    "CreateContainerResult",
    "Event",
    "NRIConfig",
    "NRIError",
    "Plugin",
    "PluginError",
    "RegistrationError",
    "SpecAdjustError",
    "StateProvider",
    "UpdateCallback",
    "UpdateContainerResult",
    "UpdateError",
    "ValidationError",
    "apply_adjustment",
    "container",
    "container_update",
    "hook",
    "linux_resources",
    "mount",
    "pb",
    "pod_sandbox",
    "run_plugin",
]
