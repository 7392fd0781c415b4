"""Leave out what containerd's JSON leaves out.

runtime-spec's Go structs mark most fields ``omitempty``: an empty string, list or object is
not written at all. Building a spec step by step leaves such empties behind (a ``cpu: {}`` for
resources without CPU limits, an ``inheritable: []`` after dropping every capability); dropping
them makes the JSON compare equal to containerd's and keeps runtimes from reading "set to
nothing" where containerd meant "not set".
"""

from __future__ import annotations

from typing import Any

# Objects that are maps from the user's keys to values: an empty value there is meaningful.
_MAPS = frozenset({"annotations", "sysctl", "unified", "listenerMetadata"})
_EMPTY: tuple[Any, ...] = ("", [], {})
# Kept even when empty: required fields, and an empty capability set, which means "none" where
# leaving the object out would leave the decision to the runtime.
_KEPT = frozenset({"ociVersion", "cwd", "capabilities"})
# Booleans Go leaves out when false (``allow`` of a device rule is not one of them).
_FALSE_OMITTED = frozenset({"terminal", "noNewPrivileges", "readonly"})


def _tidy(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = item if key in _MAPS else _tidy(item)
            if item is None or (item in _EMPTY and key not in _KEPT):
                continue
            if item is False and key in _FALSE_OMITTED:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def tidy(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` without empty strings, lists and objects (maps' values excepted) and false flags."""
    result: dict[str, Any] = _tidy(spec)
    return result
