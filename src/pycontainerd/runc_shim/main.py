"""``containerd-shim-pyrunc-v2``: the shim binary.

``start`` forks the long-lived shim server (setsid: it outlives the daemon), waits until it
listens, prints its address and exits; ``delete`` cleans up after a shim that died. Any
other invocation is an error. Flags are containerd's shim flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from google.protobuf import any_pb2, timestamp_pb2

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.services.ttrpc.events.v1 import events_pb2
from pycontainerd.api.containerd.types import event_pb2
from pycontainerd.errdefs import rpc_status
from pycontainerd.namespaces import TTRPC_NAMESPACE_HEADER

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger("pycontainerd.shim")

SOCKET_DIR = "/run/pycontainerd/s"
RUNC_ROOT = "/run/pycontainerd/runc"
TASK_SERVICE = "containerd.task.v2.Task"
EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
READY_TIMEOUT = 10.0


def socket_path(address: str, namespace: str, group: str) -> str:
    """Where a shim of ``group`` listens: stable, so a second ``start`` finds the same shim."""
    digest = hashlib.sha256(f"{address}/{namespace}/{group}".encode()).hexdigest()[:32]
    return os.path.join(SOCKET_DIR, digest)


GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")


def group_of(bundle: str, task_id: str) -> str:
    """Which shim serves this task: its group (a pod, or an explicit group) or the task itself.

    Like the Go shim, containers of one group share one shim process, which saves a shim's
    memory per container.
    """
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            annotations = json.load(fh).get("annotations") or {}
    except (OSError, ValueError):
        return task_id
    for key in GROUP_ANNOTATIONS:
        if annotations.get(key):
            return str(annotations[key])
    return task_id


def _listening(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


def parse_args(argv: list[str]) -> argparse.Namespace:
    """containerd's shim flags (single-dash long options, as Go's flag package has them)."""
    parser = argparse.ArgumentParser(prog="containerd-shim-pyrunc-v2", allow_abbrev=False)
    parser.add_argument("-namespace", default="default")
    parser.add_argument("-address", default="")
    parser.add_argument("-publish-binary", dest="publish_binary", default="")
    parser.add_argument("-id", default="")
    parser.add_argument("-bundle", default="")
    parser.add_argument("-socket", default="")
    parser.add_argument("-debug", action="store_true")
    parser.add_argument("-v", dest="version", action="store_true")
    parser.add_argument("action", nargs="?", default="")
    return parser.parse_args(argv)


class Publisher:
    """Sends events to the daemon's ttrpc Events/Forward, in order, never blocking the caller."""

    def __init__(self, ttrpc_address: str, namespace: str) -> None:
        self._address = ttrpc_address.removeprefix("unix://")
        self._namespace = namespace
        self._queue: asyncio.Queue[event_pb2.Envelope] = asyncio.Queue()
        self._task = spawn(self._run(), name="publisher")

    def publish(self, topic: str, event: Message) -> None:
        """Queue one event."""
        ns = time.time_ns()
        envelope = event_pb2.Envelope(
            timestamp=timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000),
            namespace=self._namespace,
            topic=topic,
            event=any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString()),
        )
        self._queue.put_nowait(envelope)

    async def _run(self) -> None:
        from google.protobuf import empty_pb2

        from pycontainerd.ttrpc.client import Client

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


async def serve(path: str, namespace: str, ttrpc_address: str, ready_fd: int) -> None:
    """The long-lived shim: serve the Task API on ``path`` until shut down."""
    from pycontainerd.runc_shim.reaper import Reaper, become_subreaper
    from pycontainerd.runc_shim.task import TaskService
    from pycontainerd.ttrpc.server import Server

    become_subreaper()
    reaper = Reaper()
    reaper.install()
    publisher = Publisher(ttrpc_address, namespace)
    stop = asyncio.Event()
    service = TaskService(
        reaper, namespace=namespace, runc_root=RUNC_ROOT, publish=publisher.publish, on_empty=stop.set
    )
    server = Server(error_to_status=rpc_status, require_same_user=True)
    server.register(TASK_SERVICE, service.methods())
    await server.start(path)
    os.write(ready_fd, b"ok")
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


def start(args: argparse.Namespace) -> int:
    """Fork the shim server and print its address once it listens."""
    sys.stdin.buffer.read()  # runtime options (unused by this shim)
    bundle = os.getcwd()
    path = args.socket or socket_path(args.address, args.namespace, group_of(bundle, args.id))
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    if _listening(path):
        # The group's shim is already running: it serves this task too.
        sys.stdout.write(f"unix://{path}")
        sys.stdout.flush()
        return 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket from a shim that died
    ttrpc_address = os.environ.get("TTRPC_ADDRESS", f"{args.address}.ttrpc")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the shim server
        os.close(read_fd)
        os.setsid()
        _redirect_output(bundle)
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr)
        code = 0
        try:
            asyncio.run(serve(path, args.namespace, ttrpc_address, write_fd))
        except BaseException:
            log.exception("shim failed")
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        ok = ready.read(2) == b"ok"
    if not ok:
        print("shim failed to start", file=sys.stderr)
        return 1
    with open(os.path.join(bundle, "shim.pid"), "w") as fh:
        fh.write(str(pid))
    sys.stdout.write(f"unix://{path}")
    sys.stdout.flush()
    return 0


def delete(args: argparse.Namespace) -> int:
    """Clean up after a dead shim: kill and delete the container, unmount its rootfs."""
    bundle = args.bundle or os.getcwd()
    root = os.path.join(RUNC_ROOT, args.namespace)
    subprocess.run(["runc", "--root", root, "delete", "--force", args.id], capture_output=True, timeout=30, check=False)
    subprocess.run(["umount", "-l", os.path.join(bundle, "rootfs")], capture_output=True, timeout=30, check=False)
    ns = time.time_ns()
    reply = shim_pb2.DeleteResponse(
        pid=0,
        exit_status=128 + signal.SIGKILL,
        exited_at=timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000),
    )
    sys.stdout.buffer.write(reply.SerializeToString())
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the shim command."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        from pycontainerd import __version__

        print(f"containerd-shim-pyrunc-v2 {__version__}")
        return 0
    if args.action == "start":
        return start(args)
    if args.action == "delete":
        return delete(args)
    print(f"containerd-shim-pyrunc-v2: unknown action {args.action!r} (start or delete)", file=sys.stderr)
    return 2
