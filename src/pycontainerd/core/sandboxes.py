"""Sandboxes: the metadata record of a pod-like group of containers (the running part is the
sandbox controller's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pycontainerd.core.containers import AnyValue, Runtime


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A sandbox record; timestamps in nanoseconds since the epoch."""

    id: str
    runtime: Runtime
    spec: AnyValue | None = None
    sandboxer: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, AnyValue] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
