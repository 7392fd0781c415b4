"""The shim server process: serves the Task API over ttrpc (or gRPC) until its last task is gone.

Imported only by the process that serves (directly after ``start`` forks, or inside the
pre-imported template process of :mod:`zygote`), never by the short-lived ``start`` client.
Events always go to the daemon over ttrpc, whichever protocol the Task API is served with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2
from pycontainerd.errdefs import rpc_status
from pycontainerd.events import wire
from pycontainerd.namespaces import TTRPC_NAMESPACE_HEADER
from pycontainerd.runc_shim.reaper import Reaper, become_subreaper
from pycontainerd.runc_shim.sandbox import SANDBOX_SERVICE, SandboxService
from pycontainerd.runc_shim.task import TaskService
from pycontainerd.ttrpc.client import Client
from pycontainerd.ttrpc.server import Server

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from google.protobuf.message import Message

    from pycontainerd.api.containerd.types import event_pb2
    from pycontainerd.runc_shim.grpc_server import GrpcServer

log = logging.getLogger("pycontainerd.shim")

RUNC_ROOT = "/run/pycontainerd/runc"
TASK_SERVICE = "containerd.task.v2.Task"
TASK_SERVICE_V3 = "containerd.task.v3.Task"
EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"


class Publisher:
    """Sends events to the daemon's ttrpc Events/Forward, in order, never blocking the caller."""

    def __init__(self, ttrpc_address: str, namespace: str) -> None:
        self._address = ttrpc_address.removeprefix("unix://")
        self._namespace = namespace
        self._queue: asyncio.Queue[event_pb2.Envelope] = asyncio.Queue()
        self._task = spawn(self._run(), name="publisher")

    def publish(self, topic: str, event: Message) -> None:
        """Queue one event."""
        self._queue.put_nowait(wire.envelope(self._namespace, topic, event))

    async def _run(self) -> None:

        client = None
        while True:
            envelope = await self._queue.get()
            for attempt in range(3):
                try:
                    if client is None:
                        client = await Client.connect(self._address)
                    await client.call(
                        EVENTS_SERVICE,
                        "Forward",
                        events_pb2.ForwardRequest(envelope=envelope),
                        empty_pb2.Empty,
                        metadata={TTRPC_NAMESPACE_HEADER: [self._namespace]},
                        timeout=5,
                    )
                    break
                except Exception:
                    log.debug("event forward failed (attempt %d)", attempt + 1, exc_info=True)
                    client = None
                    await asyncio.sleep(0.2 * (attempt + 1))
            self._queue.task_done()

    async def drain(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Give queued events a chance to go out before exit."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)


async def serve(path: str, namespace: str, ttrpc_address: str, ready_fd: int, protocol: str = "ttrpc") -> None:
    """The long-lived shim: serve the Task API on ``path`` with ``protocol`` until shut down."""

    become_subreaper()
    reaper = Reaper()
    reaper.install()
    publisher = Publisher(ttrpc_address, namespace)
    stop = asyncio.Event()
    service = TaskService(
        reaper, namespace=namespace, runc_root=RUNC_ROOT, publish=publisher.publish, on_empty=stop.set
    )
    server: Server | GrpcServer
    if protocol == "grpc":
        from pycontainerd.runc_shim.grpc_server import GrpcServer

        # Over gRPC containerd speaks Task API v3 (wire-identical to v2); v2 is there for old clients.
        server = GrpcServer(error_to_status=rpc_status)
        server.register(TASK_SERVICE_V3, service.methods())
    else:
        server = Server(error_to_status=rpc_status, require_same_user=True)
    server.register(TASK_SERVICE, service.methods())
    server.register(SANDBOX_SERVICE, SandboxService(service).methods())
    await server.start(path)
    os.write(ready_fd, f"ok {os.getpid()}".encode())
    os.close(ready_fd)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await asyncio.sleep(0.05)  # let the Shutdown reply go out
    await publisher.drain()
    await server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _redirect_output(bundle: str) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    target = devnull
    log_fifo = os.path.join(bundle, "log")
    with contextlib.suppress(OSError):
        target = os.open(log_fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(target, True)
    os.dup2(target, 1)
    os.dup2(target, 2)


def run_server(
    path: str,
    namespace: str,
    ttrpc_address: str,
    bundle: str,
    debug: bool,
    ready_fd: int,
    protocol: str = "ttrpc",
    serve_fn: Callable[[str, str, str, int, str], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Body of a freshly forked shim: detach, log to the bundle's FIFO, serve; returns an exit code."""
    os.setsid()
    _redirect_output(bundle)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr)
    try:
        asyncio.run((serve_fn or serve)(path, namespace, ttrpc_address, ready_fd, protocol))
    except BaseException:
        log.exception("shim failed")
        return 1
    return 0


def fork_shim(
    request: dict[str, object],
    serve_fn: Callable[[str, str, str, int, str], Coroutine[Any, Any, None]] | None = None,
) -> dict[str, object]:
    """Start a detached shim for ``request`` (bundle, path, namespace, ttrpc_address, debug, env,
    protocol); ``serve_fn`` is the shim's body (default: this runc shim's :func:`serve`).

    Forks twice so the shim is nobody's child (like a daemonised Go shim) and waits until it
    listens; returns ``{"ok": True, "pid": ..., "protocol": ...}`` or ``{"ok": False, "error": ...}``.
    """
    protocol = str(request.get("protocol") or "ttrpc")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # intermediate: start the shim and vanish
        os.close(read_fd)
        if os.fork() == 0:
            code = 1
            try:
                os.chdir(str(request["bundle"]))
                env = request.get("env")
                if isinstance(env, dict):
                    os.environ.clear()
                    os.environ.update({str(k): str(v) for k, v in env.items()})
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = run_server(
                    str(request["path"]),
                    str(request["namespace"]),
                    str(request["ttrpc_address"]),
                    str(request["bundle"]),
                    bool(request.get("debug")),
                    write_fd,
                    protocol,
                    serve_fn,
                )
            finally:
                os._exit(code)
        os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read(64).split()
    if not answer or answer[0] != b"ok":
        return {"ok": False, "error": "shim failed to start"}
    return {"ok": True, "pid": int(answer[1]) if len(answer) > 1 else 0, "protocol": protocol}
