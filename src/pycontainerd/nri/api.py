"""NRI protocol facts shared by the runtime and the plugin SDK: names, events, markers.

The messages themselves are the generated :mod:`pycontainerd.api.nri.api_pb2` (re-exported
here as ``pb``); this module holds what the Go code keeps next to them in ``pkg/api``: the
service names, environment variables, plugin name rules, the event bit mask and the ``-``
removal marker.
"""

from __future__ import annotations

import enum
import importlib
import re
from typing import Any

# Imported dynamically on purpose: the generated stub (api_pb2.pyi) is not valid Python for
# mypy, because the wire contract has an enum value named ``None`` and a field named
# ``class``. Messages are therefore typed as Any for the type checker.
pb: Any = importlib.import_module("pycontainerd.api.nri.api_pb2")

__all__ = [
    "DEFAULT_REGISTRATION_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "NRI_VERSION",
    "PLUGIN_IDX_ENV",
    "PLUGIN_NAME_ENV",
    "PLUGIN_SERVICE",
    "PLUGIN_SOCKET_ENV",
    "RUNTIME_SERVICE",
    "VALID_EVENTS",
    "Event",
    "check_plugin_index",
    "check_plugin_name",
    "clear_removal_marker",
    "event_bit",
    "event_names",
    "is_marked_for_removal",
    "mark_for_removal",
    "parse_plugin_name",
    "pb",
]

PACKAGE = "nri.pkg.api.v1alpha1"
PLUGIN_SERVICE = f"{PACKAGE}.Plugin"
RUNTIME_SERVICE = f"{PACKAGE}.Runtime"

PLUGIN_SOCKET_ENV = "NRI_PLUGIN_SOCKET"
"""Set (to an inherited file descriptor number) for plugins the runtime launches."""
PLUGIN_NAME_ENV = "NRI_PLUGIN_NAME"
PLUGIN_IDX_ENV = "NRI_PLUGIN_IDX"

DEFAULT_REGISTRATION_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 2.0

NRI_VERSION = "v0.10.0-pycontainerd"
"""What we announce as our NRI (module) version in Configure and RegisterPlugin."""


class Event(enum.IntEnum):
    """The lifecycle events (``nri.pkg.api.v1alpha1.Event``)."""

    RUN_POD_SANDBOX = pb.RUN_POD_SANDBOX
    STOP_POD_SANDBOX = pb.STOP_POD_SANDBOX
    REMOVE_POD_SANDBOX = pb.REMOVE_POD_SANDBOX
    CREATE_CONTAINER = pb.CREATE_CONTAINER
    POST_CREATE_CONTAINER = pb.POST_CREATE_CONTAINER
    START_CONTAINER = pb.START_CONTAINER
    POST_START_CONTAINER = pb.POST_START_CONTAINER
    UPDATE_CONTAINER = pb.UPDATE_CONTAINER
    POST_UPDATE_CONTAINER = pb.POST_UPDATE_CONTAINER
    STOP_CONTAINER = pb.STOP_CONTAINER
    REMOVE_CONTAINER = pb.REMOVE_CONTAINER
    UPDATE_POD_SANDBOX = pb.UPDATE_POD_SANDBOX
    POST_UPDATE_POD_SANDBOX = pb.POST_UPDATE_POD_SANDBOX
    VALIDATE_CONTAINER_ADJUSTMENT = pb.VALIDATE_CONTAINER_ADJUSTMENT

    @property
    def method(self) -> str:
        """The Plugin service method relaying this event, e.g. ``RunPodSandbox``."""
        return "".join(part.capitalize() for part in self.name.split("_"))


def event_bit(event: Event | int) -> int:
    """The bit of ``event`` in a subscription mask (bit n-1 for event n)."""
    return 1 << (int(event) - 1)


VALID_EVENTS = (1 << (pb.LAST - 1)) - 1
"""The mask of every event this protocol version defines."""


def event_names(mask: int) -> list[str]:
    """The method names of the events set in ``mask`` (unknown bits as hex)."""
    names = [event.method for event in Event if mask & event_bit(event)]
    if extra := mask & ~VALID_EVENTS:
        names.append(f"unknown(0x{extra:x})")
    return names


_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def check_plugin_name(name: str) -> None:
    """Refuse an empty name or one with characters outside ``[A-Za-z0-9_.+-]``.

    Raises:
        ValueError: With the reason.
    """
    if not name:
        raise ValueError("invalid plugin name: name is empty")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid plugin name {name!r}: only [A-Za-z0-9_.+-] allowed")


def check_plugin_index(idx: str) -> None:
    """Refuse an index that is not exactly two decimal digits.

    Raises:
        ValueError: With the reason.
    """
    if len(idx) != 2 or not idx.isascii() or not idx.isdigit():
        raise ValueError(f"invalid plugin index {idx!r}, must be 2 digits")


def parse_plugin_name(filename: str) -> tuple[str, str]:
    """Split an installed plugin's file name ``NN-name`` into ``(index, name)``.

    Raises:
        ValueError: If the name has no ``-`` or the index is invalid.
    """
    idx, sep, base = filename.partition("-")
    if not sep:
        raise ValueError(f"invalid plugin name {filename!r}, idx-pluginname expected")
    check_plugin_index(idx)
    return idx, base


def mark_for_removal(key: str) -> str:
    """The key that asks for ``key`` to be removed (``-key``)."""
    return "-" + key


def is_marked_for_removal(key: str) -> tuple[str, bool]:
    """``(key without marker, True)`` for ``-key``, else ``(key, False)``."""
    if key.startswith("-"):
        return key[1:], True
    return key, False


def clear_removal_marker(key: str) -> str:
    """``key`` without a leading removal marker."""
    return is_marked_for_removal(key)[0]
