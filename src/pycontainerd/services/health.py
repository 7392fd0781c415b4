"""``grpc.health.v1.Health``: SERVING while the daemon runs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from pycontainerd.errdefs import NotFound
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import Registration

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthService(health_pb2_grpc.HealthServicer):
    """Reports the overall server status (service name ``""``)."""

    def __init__(self) -> None:
        self._status = SERVING
        self._changed = asyncio.Event()

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def set_serving(self, serving: bool) -> None:
        """Switch the reported status (NOT_SERVING during shutdown)."""
        self._status = SERVING if serving else NOT_SERVING
        self._changed.set()
        self._changed = asyncio.Event()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        if request.service:
            raise NotFound(f"unknown service {request.service}")
        return health_pb2.HealthCheckResponse(status=self._status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        if request.service:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        while True:
            yield health_pb2.HealthCheckResponse(status=self._status)
            await self._changed.wait()


REGISTRATION = Registration(type=types.GRPC, id="healthcheck", init=lambda _ctx: HealthService())
