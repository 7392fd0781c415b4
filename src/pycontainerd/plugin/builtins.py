"""The explicit list of plugins that ship with pycontainerd, in registration order.

Third-party plugins come from two places: the ``pycontainerd.plugins`` entry-point group
(each entry point names a :class:`Registration`), and ``plugin_dir`` in config.toml, a
directory of ``*.py`` files each defining ``REGISTRATION`` or ``REGISTRATIONS`` (containerd's
``plugin_dir`` loads Go plugins the same way).
"""

from __future__ import annotations

import importlib.util
import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pycontainerd.content.local import plugin as content_plugin
from pycontainerd.cri import plugin as cri_plugin
from pycontainerd.diff import plugin as diff_plugin
from pycontainerd.events import plugin as events_plugin
from pycontainerd.gc import plugin as gc_plugin
from pycontainerd.metadata import plugin as metadata_plugin
from pycontainerd.nri import registration as nri_plugin
from pycontainerd.plugin.registration import Registration
from pycontainerd.runtime.v2 import plugin as runtime_plugin
from pycontainerd.services import (
    containers,
    content,
    diff,
    events,
    gc,
    health,
    images,
    introspection,
    leases,
    namespaces,
    sandbox_controller,
    sandbox_store,
    snapshots,
    streaming,
    tasks,
    transfer,
    ttrpc_events,
    version,
)
from pycontainerd.snapshots import plugin as snapshots_plugin

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pycontainerd.plugins"


def builtin_registrations() -> list[Registration]:
    """Every built-in registration."""
    return [
        content_plugin.REGISTRATION,
        events_plugin.REGISTRATION,
        *snapshots_plugin.REGISTRATIONS,
        metadata_plugin.REGISTRATION,
        gc_plugin.REGISTRATION,
        diff_plugin.WALKING_REGISTRATION,
        diff_plugin.SERVICE_REGISTRATION,
        runtime_plugin.REGISTRATION,
        version.REGISTRATION,
        namespaces.REGISTRATION,
        content.REGISTRATION,
        images.REGISTRATION,
        containers.REGISTRATION,
        sandbox_store.REGISTRATION,
        sandbox_controller.PODSANDBOX_REGISTRATION,
        sandbox_controller.SHIM_REGISTRATION,
        sandbox_controller.REGISTRATION,
        snapshots.REGISTRATION,
        diff.REGISTRATION,
        streaming.MANAGER_REGISTRATION,
        streaming.REGISTRATION,
        transfer.VERIFIER_REGISTRATION,
        transfer.LOCAL_REGISTRATION,
        transfer.REGISTRATION,
        tasks.REGISTRATION,
        ttrpc_events.REGISTRATION,
        nri_plugin.REGISTRATION,
        cri_plugin.REGISTRATION,
        leases.REGISTRATION,
        events.REGISTRATION,
        gc.REGISTRATION,
        introspection.REGISTRATION,
        health.REGISTRATION,
    ]


def external_registrations() -> list[Registration]:
    """Registrations advertised by installed packages; broken ones are logged and skipped."""
    found: list[Registration] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            reg = ep.load()
        except Exception:
            log.exception("cannot load plugin entry point %s", ep.name)
            continue
        if isinstance(reg, Registration):
            found.append(reg)
        else:
            log.error("plugin entry point %s is not a Registration", ep.name)
    return found


def all_registrations() -> list[Registration]:
    """Built-in registrations followed by external ones."""
    return builtin_registrations() + external_registrations()


class PluginLoadError(Exception):
    """A file in ``plugin_dir`` could not be loaded."""


def load_plugin_dir(directory: Path) -> list[Registration]:
    """Registrations defined by the ``*.py`` files of ``directory``, in file-name order.

    A file that fails to import or defines no registration stops start-up, as a broken Go
    plugin does in containerd: silently running without a plugin the operator installed is worse.
    """
    found: list[Registration] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.py")):
        name = f"pycontainerd_plugin_dir_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PluginLoadError(f"cannot load plugin file {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginLoadError(f"plugin file {path}: {type(exc).__name__}: {exc}") from exc
        regs = getattr(module, "REGISTRATIONS", None) or [getattr(module, "REGISTRATION", None)]
        valid = [r for r in regs if isinstance(r, Registration)]
        if not valid:
            raise PluginLoadError(f"plugin file {path} defines no REGISTRATION")
        found.extend(valid)
    return found
