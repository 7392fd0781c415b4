"""Render a configuration as TOML, for ``config default`` and ``config dump``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tomli_w

from pycontainerd.config.decode import to_table

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pycontainerd.config.model import Config
    from pycontainerd.plugin.registration import Registration


def explain(table: dict[str, Any], sources: dict[tuple[str, ...], str]) -> str:
    """Every leaf of ``table`` as ``key = value  # source`` (default, a file, or flag)."""
    lines: list[str] = []

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            path = (*prefix, key)
            if isinstance(value, dict) and value:
                walk(value, path)
                continue
            shown = json.dumps(value)  # one line; for these values JSON spells them as TOML does
            name = ".".join(f'"{p}"' if "." in p else p for p in path)
            lines.append(f"{name} = {shown}  # {sources.get(path, 'default')}")

    walk(table, ())
    return "\n".join(lines) + "\n"


def full_table(
    config: Config, registrations: Iterable[Registration] = (), *, resolved: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config as a table, every plugin's section included (see :func:`render`)."""
    table: dict[str, Any] = to_table(config)
    plugins: dict[str, Any] = {}
    for reg in registrations:
        if reg.config is None:
            continue
        if resolved is not None and reg.uri in resolved:
            plugins[reg.uri] = to_table(resolved[reg.uri])
        else:
            section = to_table(reg.config())
            section.update(config.plugins.get(reg.uri, {}))
            plugins[reg.uri] = section
    for uri, raw in config.plugins.items():
        plugins.setdefault(uri, raw)
    table["plugins"] = dict(sorted(plugins.items()))
    return table


def render(
    config: Config, registrations: Iterable[Registration] = (), *, resolved: dict[str, Any] | None = None
) -> str:
    """The config as TOML, every plugin's section included.

    Each registration with a config class contributes ``[plugins."<type>.<id>"]``: the decoded
    value from ``resolved`` when given (``config dump``), else the plugin's defaults merged
    with whatever raw table the config holds for it.
    """
    table = full_table(config, registrations, resolved=resolved)
    # version first, scalar keys before tables, as containerd prints it.
    ordered: dict[str, Any] = {"version": table.pop("version")}
    ordered.update({k: v for k, v in table.items() if not isinstance(v, dict)})
    ordered.update({k: v for k, v in table.items() if isinstance(v, dict)})
    return tomli_w.dumps(ordered, multiline_strings=False)
