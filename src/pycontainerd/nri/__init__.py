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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.nri.adaptation import Adaptation, StateProvider
    from pycontainerd.nri.adjust import Adjustment, container_update
    from pycontainerd.nri.api import Event, pb
    from pycontainerd.nri.builders import container, hook, linux_resources, mount, pod_sandbox
    from pycontainerd.nri.config import NRIConfig
    from pycontainerd.nri.connection import UpdateCallback
    from pycontainerd.nri.errors import NRIError, PluginError, RegistrationError, ValidationError
    from pycontainerd.nri.owners import ConflictError
    from pycontainerd.nri.plugin import Plugin
    from pycontainerd.nri.result import CreateContainerResult, UpdateContainerResult
    from pycontainerd.nri.runner import run_plugin
    from pycontainerd.nri.spec import SpecAdjustError, apply_adjustment
    from pycontainerd.nri.updates import UpdateError

# Modules load on first use (PEP 562): the daemon imports the NRI plugin's registration at
# start-up, the adaptation and the SDK only when NRI runs.
_LAZY = {
    "Adaptation": "pycontainerd.nri.adaptation",
    "StateProvider": "pycontainerd.nri.adaptation",
    "Adjustment": "pycontainerd.nri.adjust",
    "container_update": "pycontainerd.nri.adjust",
    "Event": "pycontainerd.nri.api",
    "pb": "pycontainerd.nri.api",
    "container": "pycontainerd.nri.builders",
    "hook": "pycontainerd.nri.builders",
    "linux_resources": "pycontainerd.nri.builders",
    "mount": "pycontainerd.nri.builders",
    "pod_sandbox": "pycontainerd.nri.builders",
    "NRIConfig": "pycontainerd.nri.config",
    "UpdateCallback": "pycontainerd.nri.connection",
    "NRIError": "pycontainerd.nri.errors",
    "PluginError": "pycontainerd.nri.errors",
    "RegistrationError": "pycontainerd.nri.errors",
    "ValidationError": "pycontainerd.nri.errors",
    "ConflictError": "pycontainerd.nri.owners",
    "Plugin": "pycontainerd.nri.plugin",
    "CreateContainerResult": "pycontainerd.nri.result",
    "UpdateContainerResult": "pycontainerd.nri.result",
    "run_plugin": "pycontainerd.nri.runner",
    "SpecAdjustError": "pycontainerd.nri.spec",
    "apply_adjustment": "pycontainerd.nri.spec",
    "UpdateError": "pycontainerd.nri.updates",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
