"""Lease value types, shared by the lease store, its gRPC service and the client."""

from __future__ import annotations

from dataclasses import dataclass, field

EXPIRE_LABEL = "containerd.io/gc.expire"
"""A lease with this label (RFC 3339) stops protecting its resources once the time has passed."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease and its labels; ``created_at`` in nanoseconds since the epoch."""

    id: str
    created_at: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resource:
    """Something a lease holds: ``type`` is ``content``, ``ingests`` or ``snapshots/<snapshotter>``."""

    id: str
    type: str
