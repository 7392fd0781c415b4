"""``pycontainerd.services.gc.v1.GC``: plan a collection, explain a retention, collect now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycontainerd.api.pycontainerd.services.gc.v1 import gc_pb2 as pb
from pycontainerd.api.pycontainerd.services.gc.v1 import gc_pb2_grpc as pb_grpc
from pycontainerd.gc.plugin import blob_backend
from pycontainerd.metadata import gc as metadata_gc
from pycontainerd.namespaces import namespace_required
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context

if TYPE_CHECKING:
    import grpc

    from pycontainerd.gc.scheduler import Scheduler
    from pycontainerd.metadata.plugin import Metadata


def sweep_to_pb(sweep: metadata_gc.Sweep) -> pb.PlanResponse:
    """A sweep as the reply lists it."""
    removals = [pb.Removal(kind="content", namespace=ns, id=d, size=s) for ns, d, s in sweep.content]
    removals += [pb.Removal(kind="ingest", namespace=ns, id=ref) for ns, ref in sweep.ingests]
    removals += [pb.Removal(kind="lease", namespace=ns, id=lid) for ns, lid in sweep.leases]
    removals += [pb.Removal(kind=f"snapshot/{sn}", namespace=ns, id=key) for ns, sn, key in sweep.snapshots]
    removals += [pb.Removal(kind="blob", id=d, size=s) for d, s in sweep.blobs]
    return pb.PlanResponse(removals=removals, bytes_freed=sweep.bytes_freed, duration_seconds=sweep.duration_s)


class GCService(pb_grpc.GCServicer):
    """Inspect and drive garbage collection."""

    def __init__(self, metadata: Metadata, scheduler: Scheduler) -> None:
        self._metadata = metadata
        self._scheduler = scheduler

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_GCServicer_to_server(self, server)

    async def Plan(self, request: pb.PlanRequest, context: Any) -> pb.PlanResponse:
        sweep, _ = metadata_gc.plan(self._metadata.db, blob_backend(self._metadata))
        return sweep_to_pb(sweep)

    async def Why(self, request: pb.WhyRequest, context: Any) -> pb.WhyResponse:
        ns = namespace_required(request_context(context))
        _, marks = metadata_gc.plan(self._metadata.db, None)
        chain = marks.why((request.kind or "content", ns, request.id))
        return pb.WhyResponse(reachable=bool(chain), chain=chain)

    async def Collect(self, request: pb.CollectRequest, context: Any) -> pb.PlanResponse:
        return sweep_to_pb(await self._scheduler.schedule_and_wait())


def _init(ctx: InitContext) -> GCService:
    return GCService(ctx.plugins.first(types.METADATA), ctx.plugins.first(types.GC))


REGISTRATION = Registration(type=types.GRPC, id="gc", init=_init, requires=(types.METADATA, types.GC))
