"""Differs: apply a layer blob onto mounts, and compare two sets of mounts into a new layer.

containerd's ``diff.Applier`` + ``diff.Comparer``. Implementations: the in-process "walking"
differ (``diff/walking.py``) and a differ served by another process (``diff/proxy.py``). The
Diff service and image unpack try the configured differs in order; a differ answers
:class:`~pycontainerd.errdefs.Unimplemented` for what it cannot do (a media type it does not
know), and the next one is tried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.core.images import Descriptor
    from pycontainerd.core.snapshots import Mount
    from pycontainerd.namespaces import RequestContext


class Differ(Protocol):
    """Applies and creates layers; both calls act in the namespace of ``ctx``.

    ``in_process`` is True for a differ that applies in this process (unpack then streams a
    layer straight from its download instead of reading it back from the content store).
    """

    @property
    def in_process(self) -> bool: ...

    async def apply(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        payloads: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        """Apply the layer blob ``desc`` (held by the namespace's content store) onto ``mounts``.

        Returns the descriptor of the uncompressed layer (its digest is the diff ID).
        ``payloads`` are opaque values for stream processors (protobuf ``Any`` by key), passed
        on as they came.
        """
        ...

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
        """Write the changes from ``lower`` to ``upper`` as a layer into the content store."""
        ...
