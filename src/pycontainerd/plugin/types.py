"""Plugin type URIs, the same strings containerd uses."""

from __future__ import annotations

from typing import Final

INTERNAL: Final = "io.containerd.internal.v1"
RUNTIME_V2: Final = "io.containerd.runtime.v2"
SERVICE: Final = "io.containerd.service.v1"
GRPC: Final = "io.containerd.grpc.v1"
TTRPC: Final = "io.containerd.ttrpc.v1"
SNAPSHOT: Final = "io.containerd.snapshotter.v1"
CONTENT: Final = "io.containerd.content.v1"
METADATA: Final = "io.containerd.metadata.v1"
GC: Final = "io.containerd.gc.v1"
EVENT: Final = "io.containerd.event.v1"
LEASE: Final = "io.containerd.lease.v1"
DIFF: Final = "io.containerd.differ.v1"
TRANSFER: Final = "io.containerd.transfer.v1"
STREAMING: Final = "io.containerd.streaming.v1"
IMAGE_VERIFIER: Final = "io.containerd.image-verifier.v1"
SANDBOX_STORE: Final = "io.containerd.sandbox.store.v1"
SANDBOX_CONTROLLER: Final = "io.containerd.sandbox.controller.v1"
CRI: Final = "io.containerd.cri.v1"
NRI: Final = "io.containerd.nri.v1"
WARNING: Final = "io.containerd.warning.v1"

ALL: Final = "*"
"""Requiring ``ALL`` makes a plugin start after every other plugin."""
