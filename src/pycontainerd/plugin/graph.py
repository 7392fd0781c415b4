"""Order registrations so that each comes after the plugins of the types it requires."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.plugin.types import ALL

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pycontainerd.plugin.registration import Registration


def ordered(registrations: Iterable[Registration], *, disabled: Iterable[str] = ()) -> list[Registration]:
    """Registrations in a dependency-respecting order.

    Disabled URIs are dropped first. Within those constraints the registration order is kept,
    so the result is deterministic. A plugin requiring ``"*"`` comes after all plugins that do
    not. A cycle or a duplicate URI raises :class:`InvalidArgument`.
    """
    skip = set(disabled)
    regs = [r for r in registrations if r.uri not in skip]
    seen_uris: set[str] = set()
    for reg in regs:
        if reg.uri in seen_uris:
            raise InvalidArgument(f"plugin {reg.uri} registered twice")
        seen_uris.add(reg.uri)

    by_type: dict[str, list[Registration]] = {}
    for reg in regs:
        by_type.setdefault(reg.type, []).append(reg)

    result: list[Registration] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(reg: Registration) -> None:
        if reg.uri in done:
            return
        if reg.uri in visiting:
            cycle = " -> ".join([*visiting[visiting.index(reg.uri) :], reg.uri])
            raise InvalidArgument(f"plugin dependency cycle: {cycle}")
        visiting.append(reg.uri)
        for required in reg.requires:
            if required == ALL:
                continue
            for dep in by_type.get(required, []):
                if dep.uri != reg.uri:
                    visit(dep)
        visiting.pop()
        done.add(reg.uri)
        result.append(reg)

    for reg in regs:
        if ALL not in reg.requires:
            visit(reg)
    for reg in regs:
        visit(reg)
    return result
