"""Images: a name pointing at a target descriptor (usually an index or manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI descriptor: what a blob is, where to find it, how big it is."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Image:
    """A named image; timestamps in nanoseconds since the epoch."""

    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
