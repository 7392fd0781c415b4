"""Render a configuration as TOML, for ``config default`` and ``config dump``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tomli_w

from pycontainerd.config.decode import to_table

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pycontainerd.config.model import Config
    from pycontainerd.plugin.registration import Registration


def render(
    config: Config, registrations: Iterable[Registration] = (), *, resolved: dict[str, Any] | None = None
) -> str:
    """The config as TOML, every plugin's section included.

    Each registration with a config class contributes ``[plugins."<type>.<id>"]``: the decoded
    value from ``resolved`` when given (``config dump``), else the plugin's defaults merged
    with whatever raw table the config holds for it.
    """
    table = to_table(config)
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
    # version first, scalar keys before tables, as containerd prints it.
    ordered: dict[str, Any] = {"version": table.pop("version")}
    ordered.update({k: v for k, v in table.items() if not isinstance(v, dict)})
    ordered.update({k: v for k, v in table.items() if isinstance(v, dict)})
    return tomli_w.dumps(ordered, multiline_strings=False)
