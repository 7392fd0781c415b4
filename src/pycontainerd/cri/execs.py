"""Processes in running containers: ExecSync, and the exec / attach / port-forward work behind
the streaming server's URLs.

An exec is a task process of the container's shim (Exec, Start, Wait, Delete) with its stdio
on FIFOs under the container's IO directory. ExecSync collects the output (at most 16 MiB per
stream, as kubelet's message size allows) and kills the process when the timeout passes
(DeadlineExceeded, which kubelet reads as a probe timeout). Port forwarding connects to
``localhost:<port>`` inside the pod's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cni import run_in_netns
from pycontainerd.cri.io import FifoPump, StdinWriter, make_fifo
from pycontainerd.errdefs import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from pycontainerd.cri import state
    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
MAX_OUTPUT = 16 * 1024 * 1024
DRAIN_GRACE = 2.0

OnOutput = Callable[[str, bytes], Awaitable[None] | None]


def _running(svc: CRIService, container_id: str) -> state.CRIContainer:
    ctr = svc.container(container_id)
    if ctr.status.state != api.CONTAINER_RUNNING:
        raise FailedPrecondition(f"container {ctr.id} is in {api.ContainerState.Name(ctr.status.state)} state")
    return ctr


async def run_exec(
    svc: CRIService,
    container_id: str,
    cmd: list[str],
    *,
    tty: bool = False,
    stdin: AsyncIterator[bytes] | None = None,
    on_output: OnOutput | None = None,
    resize: AsyncIterator[tuple[int, int]] | None = None,
    timeout: float = 0,  # noqa: ASYNC109
) -> int:
    """Run ``cmd`` in a running container; returns its exit code."""
    if not cmd:
        raise InvalidArgument("cmd must not be empty")
    ctr = _running(svc, container_id)
    record = svc.metadata.containers.get(svc.ctx, ctr.id)
    spec = json.loads(record.spec.value) if record.spec is not None else {}
    process = dict(spec.get("process") or {})
    process["args"] = list(cmd)
    process["terminal"] = tty
    exec_id = secrets.token_hex(16)
    directory = svc.io_dir(ctr.id) / f"exec-{exec_id}"
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"stdin": directory / "stdin" if stdin is not None else None, "stdout": directory / "stdout"}
    paths["stderr"] = None if tty else directory / "stderr"
    pending: list[Any] = []

    def deliver(stream: str, data: bytes) -> None:
        if on_output is not None:
            result = on_output(stream, data)
            if result is not None:
                pending.append(spawn(result))  # type: ignore[arg-type]

    pumps: list[FifoPump] = []
    writer: StdinWriter | None = None
    helpers: list[asyncio.Task[Any]] = []
    started = False
    try:
        for stream in ("stdout", "stderr"):
            path = paths[stream]
            if path is not None:
                make_fifo(path)
                pumps.append(FifoPump(path, stream, deliver))
        if paths["stdin"] is not None:
            make_fifo(paths["stdin"])
            writer = StdinWriter(paths["stdin"])
        request = shim_pb2.ExecProcessRequest(
            id=ctr.id,
            exec_id=exec_id,
            terminal=tty,
            stdin=str(paths["stdin"] or ""),
            stdout=str(paths["stdout"]),
            stderr=str(paths["stderr"] or ""),
        )
        request.spec.CopyFrom(any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode()))
        await svc.tasks.call(svc.ctx, ctr.id, "Exec", request, empty_pb2.Empty)
        waiting = spawn(svc.tasks.wait(svc.ctx, ctr.id, exec_id))
        await svc.tasks.call(
            svc.ctx, ctr.id, "Start", shim_pb2.StartRequest(id=ctr.id, exec_id=exec_id), shim_pb2.StartResponse
        )
        started = True
        for pump in pumps:
            pump.release_hold()
        if writer is not None and stdin is not None:
            helpers.append(spawn(_copy_stdin(svc, ctr.id, exec_id, stdin, writer)))
        if resize is not None:
            helpers.append(spawn(_resize(svc, ctr.id, exec_id, resize)))
        try:
            reply = await (asyncio.wait_for(asyncio.shield(waiting), timeout) if timeout > 0 else waiting)
        except TimeoutError:
            with contextlib.suppress(NotFound):
                await svc.tasks.call(
                    svc.ctx,
                    ctr.id,
                    "Kill",
                    shim_pb2.KillRequest(id=ctr.id, exec_id=exec_id, signal=signal.SIGKILL),
                    empty_pb2.Empty,
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(waiting, 5)
            raise DeadlineExceeded(f"timeout {timeout:g}s exceeded") from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.closed for p in pumps)), DRAIN_GRACE)
        return int(reply.exit_status)
    finally:
        for helper in helpers:
            helper.cancel()
        for pump in pumps:
            pump.close()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if writer is not None:
            writer.close()
        if started:
            with contextlib.suppress(Exception):
                await svc.tasks.call(
                    svc.ctx,
                    ctr.id,
                    "Delete",
                    shim_pb2.DeleteRequest(id=ctr.id, exec_id=exec_id),
                    shim_pb2.DeleteResponse,
                )
        shutil.rmtree(directory, ignore_errors=True)


async def _copy_stdin(
    svc: CRIService, container_id: str, exec_id: str, source: AsyncIterator[bytes], writer: StdinWriter
) -> None:
    async for chunk in source:
        await writer.write(chunk)
    writer.close()
    with contextlib.suppress(Exception):
        await svc.tasks.call(
            svc.ctx,
            container_id,
            "CloseIO",
            shim_pb2.CloseIORequest(id=container_id, exec_id=exec_id, stdin=True),
            empty_pb2.Empty,
        )


async def _resize(svc: CRIService, container_id: str, exec_id: str, sizes: AsyncIterator[tuple[int, int]]) -> None:
    async for width, height in sizes:
        with contextlib.suppress(Exception):
            await svc.tasks.call(
                svc.ctx,
                container_id,
                "ResizePty",
                shim_pb2.ResizePtyRequest(id=container_id, exec_id=exec_id, width=width, height=height),
                empty_pb2.Empty,
            )


async def exec_sync(svc: CRIService, request: api.ExecSyncRequest) -> api.ExecSyncResponse:
    """Run a command to completion and return its output and exit code."""
    buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def collect(stream: str, data: bytes) -> None:
        buf = buffers[stream]
        room = MAX_OUTPUT - len(buf)
        if room > 0:
            buf += data[:room]

    code = await run_exec(svc, request.container_id, list(request.cmd), on_output=collect, timeout=request.timeout)
    return api.ExecSyncResponse(stdout=bytes(buffers["stdout"]), stderr=bytes(buffers["stderr"]), exit_code=code)


async def attach(
    svc: CRIService,
    container_id: str,
    *,
    stdin: AsyncIterator[bytes] | None,
    on_output: OnOutput | None,
    resize: AsyncIterator[tuple[int, int]] | None,
) -> None:
    """Join the container's stdio until it exits (or the client's stdin ends, for stdin_once)."""
    ctr = _running(svc, container_id)
    cio = ctr.io
    if cio is None:
        raise FailedPrecondition(f"container {ctr.id} has no IO to attach to")
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def subscriber(stream: str, data: bytes) -> None:
        queue.put_nowait((stream, data))

    cio.subscribers.add(subscriber)
    helpers: list[asyncio.Task[Any]] = []
    try:
        if stdin is not None and cio.stdin is not None:
            helpers.append(spawn(_attach_stdin(svc, ctr, stdin)))
        if resize is not None:
            helpers.append(spawn(_resize(svc, ctr.id, "", resize)))
        closed = spawn(cio.wait_closed())
        while True:
            getter = spawn(queue.get())
            done, _ = await asyncio.wait({getter, closed, *helpers}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                stream, data = getter.result()
                if on_output is not None:
                    result = on_output(stream, data)
                    if result is not None:
                        await result
                continue
            getter.cancel()
            if closed in done:
                # Output ended (with stdin_once, closing stdin above is what ends the process):
                # drain what the subscriber already queued, then the session is over.
                while not queue.empty():
                    stream, data = queue.get_nowait()
                    if on_output is not None:
                        result = on_output(stream, data)
                        if result is not None:
                            await result
                break
            helpers = [h for h in helpers if h not in done]
    finally:
        cio.subscribers.discard(subscriber)
        for helper in helpers:
            helper.cancel()


async def _attach_stdin(svc: CRIService, ctr: state.CRIContainer, source: AsyncIterator[bytes]) -> None:
    assert ctr.io is not None and ctr.io.stdin is not None
    async for chunk in source:
        await ctr.io.stdin.write(chunk)
    if ctr.config.stdin_once:
        ctr.io.stdin.close()
        with contextlib.suppress(Exception):  # the shim holds the FIFO too: ask it to close stdin
            await svc.tasks.call(
                svc.ctx, ctr.id, "CloseIO", shim_pb2.CloseIORequest(id=ctr.id, stdin=True), empty_pb2.Empty
            )


def _connect_local(port: int) -> socket.socket:
    """A TCP connection to the loopback of the calling thread's network namespace."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    return sock


async def port_forward(
    svc: CRIService, sandbox_id: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to ``port`` on the pod's loopback (the host's, for a host-network pod)."""
    pod = svc.sandbox(sandbox_id)
    if pod.state != api.SANDBOX_READY:
        raise FailedPrecondition(f"sandbox {pod.id} is not running")
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid port {port}")
    if not pod.netns_path:
        return await asyncio.open_connection("127.0.0.1", port)
    sock = await run_in_netns(pod.netns_path, _connect_local, port)
    return await asyncio.open_connection(sock=sock)
