"""The explicit list of plugins that ship with pycontainerd, in registration order.

Third-party plugins can be added through the ``pycontainerd.plugins`` entry-point group: each
entry point names a :class:`Registration` object.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from pycontainerd.events import plugin as events_plugin
from pycontainerd.metadata import plugin as metadata_plugin
from pycontainerd.plugin.registration import Registration
from pycontainerd.services import health, introspection, namespaces, version

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pycontainerd.plugins"


def builtin_registrations() -> list[Registration]:
    """Every built-in registration."""
    return [
        events_plugin.REGISTRATION,
        metadata_plugin.REGISTRATION,
        version.REGISTRATION,
        namespaces.REGISTRATION,
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
