"""Containers: metadata records (the running part is a task)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AnyValue:
    """A protobuf ``Any`` kept opaque: the type URL and serialized bytes, as sent."""

    type_url: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Runtime:
    """Which runtime runs the container, and its options."""

    name: str
    options: AnyValue | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """A container record; timestamps in nanoseconds since the epoch."""

    id: str
    runtime: Runtime
    spec: AnyValue | None = None
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    sandbox: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, AnyValue] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
