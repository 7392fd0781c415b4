"""Registration of the GC scheduler (``io.containerd.gc.v1.scheduler``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.errdefs import NotFound
from pycontainerd.gc.scheduler import Scheduler, SchedulerConfig
from pycontainerd.metadata import gc as metadata_gc
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pycontainerd.metadata.plugin import Metadata


def blob_backend(metadata: Metadata) -> metadata_gc.BlobBackend | None:
    """The content backend as GC sees it, or None when no content store is loaded."""
    if metadata.content is None:
        return None
    backend = metadata.content.backend
    return metadata_gc.BlobBackend(
        walk=lambda: ((i.digest, i.size) for i in backend.walk()),  # type: ignore[attr-defined]
        delete=backend.delete,
        ingests=lambda: (s.ref for s in backend.list_statuses()),  # type: ignore[attr-defined]
        abort=backend.abort,
    )


def _init(ctx: InitContext) -> Scheduler:
    config = ctx.config if isinstance(ctx.config, SchedulerConfig) else SchedulerConfig()
    metadata: Metadata = ctx.plugins.first(types.METADATA)

    def collect() -> metadata_gc.Sweep:
        sweepers = {name: ss.sweep_backend for name, ss in metadata.snapshotters.items()}
        return metadata_gc.collect(metadata.db, blob_backend(metadata), snapshotters=sweepers)

    scheduler = Scheduler(collect, config)
    metadata.dirty_listeners.append(scheduler.on_dirty)
    scheduler.start()
    ctx.on_close.append(scheduler.close)
    return scheduler


REGISTRATION = Registration(
    type=types.GC, id="scheduler", init=_init, requires=(types.METADATA,), config=SchedulerConfig
)


def collect_now(ctx: InitContext) -> Callable[[], Awaitable[None]] | None:
    """For services whose deletes take ``sync``: run a collection and wait, if GC is loaded."""
    try:
        scheduler: Scheduler = ctx.plugins.first(types.GC)
    except NotFound:
        return None

    async def collect() -> None:
        await scheduler.schedule_and_wait()

    return collect
