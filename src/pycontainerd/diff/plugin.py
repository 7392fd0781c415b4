"""Registrations of the built-in differ and of the diff service that orders the differs.

* ``io.containerd.differ.v1.walking``: :class:`~pycontainerd.diff.walking.WalkingDiffer`.
* ``io.containerd.service.v1.diff-service``: the differs named by its ``default`` list, in
  that order (containerd's ``[plugins."io.containerd.service.v1.diff-service"] default``). The
  Diff gRPC service and every image unpack (Transfer pull/import, CRI pulls) go through it: the
  first differ is asked, and the next one only when a differ answers Unimplemented. A differ
  proxy (``[proxy_plugins]`` of type ``diff``) named first is therefore the one used.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pycontainerd.errdefs import Unimplemented
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.core.diff import Differ
    from pycontainerd.core.images import Descriptor
    from pycontainerd.core.snapshots import Mount
    from pycontainerd.diff.walking import WalkingDiffer
    from pycontainerd.namespaces import RequestContext

DIFF_SERVICE_ID = "diff-service"
DEFAULT_DIFFER = "walking"


@dataclass(slots=True)
class DiffServiceConfig:
    """``[plugins."io.containerd.service.v1.diff-service"]``."""

    default: list[str] = field(default_factory=lambda: [DEFAULT_DIFFER])
    """Differs to try, in order (IDs of ``io.containerd.differ.v1`` plugins, proxies included)."""
    sync_fs: bool = False
    """Sync the filesystem after every apply (slower; survives a power loss right after unpack)."""


class OrderedDiffers:
    """The configured differs, tried in order; what the Diff service and unpack use."""

    def __init__(self, differs: Sequence[tuple[str, Differ]], *, sync_fs: bool = False) -> None:
        if not differs:
            raise ValueError("at least one differ is needed")
        self.differs = list(differs)
        self.sync_fs = sync_fs

    @property
    def names(self) -> list[str]:
        """The differs' IDs, in order."""
        return [name for name, _ in self.differs]

    @property
    def in_process(self) -> bool:
        """True when the first differ applies in this process (unpack may stream layers to it)."""
        return bool(getattr(self.differs[0][1], "in_process", False))

    async def apply(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        payloads: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        """Apply with the first differ that supports the layer; the last Unimplemented otherwise."""
        last: Unimplemented | None = None
        for _, differ in self.differs:
            try:
                return await differ.apply(ctx, desc, mounts, sync_fs=sync_fs or self.sync_fs, payloads=payloads)
            except Unimplemented as exc:
                last = exc
        assert last is not None
        raise last

    async def compare(
        self,
        ctx: RequestContext,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Create a layer with the first differ that supports ``media_type``."""
        last: Unimplemented | None = None
        for _, differ in self.differs:
            try:
                return await differ.compare(ctx, lower, upper, media_type=media_type, ref=ref, labels=labels)
            except Unimplemented as exc:
                last = exc
        assert last is not None
        raise last


def _init_walking(ctx: InitContext) -> WalkingDiffer:
    from pycontainerd.diff.walking import WalkingDiffer

    machine = platform.machine()
    ctx.platforms.append({"os": "linux", "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)})
    return WalkingDiffer(ctx.plugins.first(types.METADATA))


def _init_service(ctx: InitContext) -> OrderedDiffers:
    config = ctx.config if isinstance(ctx.config, DiffServiceConfig) else DiffServiceConfig()
    loaded = ctx.plugins.get_all(types.DIFF)
    if not config.default:
        raise ValueError("default: at least one differ must be named")
    ordered = []
    for name in config.default:
        if name not in loaded:
            raise ValueError(f"needed differ not loaded: {name}")
        ordered.append((name, loaded[name]))
    ctx.exports["default"] = ",".join(config.default)
    return OrderedDiffers(ordered, sync_fs=config.sync_fs)


WALKING_REGISTRATION = Registration(type=types.DIFF, id=DEFAULT_DIFFER, init=_init_walking, requires=(types.METADATA,))
SERVICE_REGISTRATION = Registration(
    type=types.SERVICE, id=DIFF_SERVICE_ID, init=_init_service, requires=(types.DIFF,), config=DiffServiceConfig
)
