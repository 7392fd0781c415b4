"""The Prometheus endpoint: ``GET /v1/metrics`` on ``[metrics] address`` (host:port)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from pycontainerd.metrics.daemon import DaemonMetrics

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def split_address(address: str) -> tuple[str, int]:
    """``127.0.0.1:1338`` -> (host, port); InvalidArgument otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"metrics address {address!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_metrics(address: str, metrics: DaemonMetrics) -> web.AppRunner:
    """Start serving; returns the runner to clean up at shutdown."""
    host, port = split_address(address)

    async def handle(request: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/v1/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics endpoint listening", extra={"address": address})
    return runner
