"""The wasm shim server process: serves the Task API over ttrpc until its last task is gone.

Built on the runc shim's framework: the same detached double fork and log redirection
(:func:`pycontainerd.runc_shim.server.fork_shim` with this module's :func:`serve`), the same
reaper and the same event publisher (``Events/Forward`` on ``TTRPC_ADDRESS``). Imported by the
serving process only (or pre-imported by the template), never by ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from pycontainerd.errdefs import rpc_status
from pycontainerd.runc_shim import server as shim_server
from pycontainerd.runc_shim.reaper import Reaper
from pycontainerd.ttrpc.server import Server
from pycontainerd.wasm_shim.task import TaskService

log = logging.getLogger("pycontainerd.wasm_shim")

TASK_SERVICE = "containerd.task.v2.Task"
ADDRESS_ENV = "GRPC_ADDRESS"


async def serve(path: str, namespace: str, ttrpc_address: str, ready_fd: int, protocol: str = "ttrpc") -> None:
    """The long-lived shim: serve the Task API on ``path`` until shut down (ttrpc only)."""
    reaper = Reaper()
    reaper.install()
    publisher = shim_server.Publisher(ttrpc_address, namespace)
    stop = asyncio.Event()
    service = TaskService(
        reaper,
        namespace=namespace,
        address=os.environ.get(ADDRESS_ENV, ""),
        publish=publisher.publish,
        on_empty=stop.set,
    )
    server = Server(error_to_status=rpc_status, require_same_user=True)
    server.register(TASK_SERVICE, service.methods())
    await server.start(path)
    os.write(ready_fd, f"ok {os.getpid()}".encode())
    os.close(ready_fd)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    service.kill_all()
    await asyncio.sleep(0.05)  # let the Shutdown reply go out
    await publisher.drain()
    await server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fork_shim(request: dict[str, Any]) -> dict[str, object]:
    """Start a detached wasm shim for ``request`` (see :func:`pycontainerd.runc_shim.server.fork_shim`)."""
    return shim_server.fork_shim(request, serve_fn=serve)
