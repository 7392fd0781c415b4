"""The wasm shim's Task API (``containerd.task.v2.Task``): one runner process per container.

Create mounts the rootfs, opens the stdio pipes (:class:`~pycontainerd.runc_shim.pipeio.ProcessIO`,
as the runc shim does), forks the runner (:mod:`~pycontainerd.wasm_shim.runner`) and waits
until it has compiled the module: the task is then *created*, with a PID. Start tells the
runner to go. Signals go to the runner itself (Pause and Resume are SIGSTOP and SIGCONT).
Exits come from the reaper, as in the runc shim, and are published as ``/tasks/exit``.

Processes follow the runc shim's state machine (:mod:`~pycontainerd.runc_shim.process`).
There is no exec, checkpoint, update or stats for a wasm task (Unimplemented).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd import pbtime
from pycontainerd.aio import spawn as spawn_task
from pycontainerd.api.containerd.events import task_pb2 as ev
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as pb
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core.snapshots import Mount
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, NotFound, Unimplemented
from pycontainerd.runc_shim.pipeio import ProcessIO
from pycontainerd.runc_shim.process import Event, Process, State
from pycontainerd.snapshots import mount as mounting
from pycontainerd.wasm_shim import runner
from pycontainerd.wasm_shim.main import start_time
from pycontainerd.wasm_shim.spec import RunPlan, plan_from_spec

if TYPE_CHECKING:
    from collections.abc import Callable

    from google.protobuf.message import Message

    from pycontainerd.runc_shim.reaper import Reaper

log = logging.getLogger(__name__)
READY_TIMEOUT = 120.0  # compiling a big module takes a while
PID_FILE = "init.pid"


def _mount_rootfs(mounts: list[Any], target: str) -> None:
    core = [Mount(type=m.type, source=m.source, options=tuple(m.options), target=m.target) for m in mounts]
    try:
        mounting.mount_all(core, target)
    except OSError as exc:
        raise FailedPrecondition(f"failed to mount rootfs component: {exc}") from exc


def _read_spec(bundle: str) -> dict[str, Any]:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            spec: dict[str, Any] = json.load(fh)
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"reading the bundle's config.json: {exc}") from exc
    return spec


def _write_pid_file(path: str, pid: int) -> None:
    """``<pid> <start time>``, for ``shim delete`` after a crash of this shim (a few bytes on tmpfs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{pid} {start_time(pid)}".encode())
    finally:
        os.close(fd)


@dataclass(slots=True)
class Container:
    """One wasm container of this shim."""

    id: str
    bundle: str
    init: Process
    plan: RunPlan
    ctl: socket.socket
    io: ProcessIO | None
    rootfs_mounted: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class TaskService:
    """Implements the Task API for the wasm containers of this shim."""

    def __init__(
        self,
        reaper: Reaper,
        *,
        namespace: str,
        address: str,
        publish: Callable[[str, Message], None],
        on_empty: Callable[[], None],
        version: str = runner.ENGINE_KEY,
    ) -> None:
        self._reaper = reaper
        self._namespace = namespace
        self._address = address
        self._publish = publish
        self._on_empty = on_empty
        self._version = version
        self._containers: dict[str, Container] = {}
        self._exits = reaper.subscribe()
        self._exit_task = spawn_task(self._watch_exits(), name="exits")

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any, Any], Any]]]:
        """The ttrpc method table."""
        return {
            "State": (pb.StateRequest, self.state),
            "Create": (pb.CreateTaskRequest, self.create),
            "Start": (pb.StartRequest, self.start),
            "Delete": (pb.DeleteRequest, self.delete),
            "Pids": (pb.PidsRequest, self.pids),
            "Pause": (pb.PauseRequest, self.pause),
            "Resume": (pb.ResumeRequest, self.resume),
            "Checkpoint": (pb.CheckpointTaskRequest, self.unimplemented("checkpoint")),
            "Kill": (pb.KillRequest, self.kill),
            "Exec": (pb.ExecProcessRequest, self.unimplemented("exec")),
            "ResizePty": (pb.ResizePtyRequest, self.resize_pty),
            "CloseIO": (pb.CloseIORequest, self.close_io),
            "Update": (pb.UpdateTaskRequest, self.unimplemented("update")),
            "Wait": (pb.WaitRequest, self.wait),
            "Stats": (pb.StatsRequest, self.unimplemented("stats")),
            "Connect": (pb.ConnectRequest, self.connect),
            "Shutdown": (pb.ShutdownRequest, self.shutdown),
        }

    @staticmethod
    def unimplemented(what: str) -> Callable[[Any, Any], Any]:
        """A handler refusing ``what``: wasm tasks have no such thing."""

        async def refuse(ctx: Any, req: Any) -> Message:
            raise Unimplemented(f"{what} is not supported for wasm tasks")

        return refuse

    def _get(self, cid: str) -> Container:
        c = self._containers.get(cid)
        if c is None:
            raise NotFound(f"container {cid}: not found")
        return c

    def _process(self, req: Any) -> tuple[Container, Process]:
        c = self._get(req.id)
        exec_id = getattr(req, "exec_id", "")  # Pids, Pause, Resume name no process
        if exec_id:
            raise NotFound(f"process {exec_id} does not exist")
        return c, c.init

    async def _watch_exits(self) -> None:
        while True:
            pid, status = await self._exits.get()
            self._reaper.forget(pid)  # nobody waits through the reaper for runners
            for c in list(self._containers.values()):
                if c.init.pid == pid and c.init.exited(status):
                    self._exited(c)

    def _exited(self, c: Container) -> None:
        for fut in c.waiters:
            if not fut.done():
                fut.set_result(None)
        c.waiters.clear()
        self._publish(
            "/tasks/exit",
            ev.TaskExit(
                container_id=c.id,
                id=c.id,
                pid=c.init.pid,
                exit_status=c.init.exit_status,
                exited_at=pbtime.timestamp(c.init.exited_at_ns),
            ),
        )

    async def create(self, ctx: Any, req: pb.CreateTaskRequest) -> pb.CreateTaskResponse:
        if req.id in self._containers:
            raise AlreadyExists(f"container {req.id}")
        spec = _read_spec(req.bundle)
        rootfs = os.path.join(req.bundle, "rootfs")
        mounted = False
        if req.rootfs:
            await asyncio.to_thread(_mount_rootfs, list(req.rootfs), rootfs)
            mounted = True
        io: ProcessIO | None = None
        ctl: socket.socket | None = None
        pid = 0
        try:
            plan = await asyncio.to_thread(plan_from_spec, spec, rootfs, req.id)
            io = ProcessIO.open(req.stdin, req.stdout, req.stderr)
            ctl, pid = self._fork(plan, io)
            ready = await self._ready(ctl)
            if ready != "ok":
                raise FailedPrecondition(f"wasm task {req.id}: {ready.removeprefix('error ')}")
        except BaseException:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if ctl is not None:
                ctl.close()
            if io is not None:
                io.abort()
            if mounted:
                await asyncio.to_thread(mounting.unmount_all, rootfs)
            raise
        _write_pid_file(os.path.join(req.bundle, PID_FILE), pid)
        init = Process(req.id, pid=pid, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal)
        self._containers[req.id] = Container(req.id, req.bundle, init, plan, ctl, io, rootfs_mounted=mounted)
        self._publish(
            "/tasks/create",
            ev.TaskCreate(
                container_id=req.id,
                bundle=req.bundle,
                rootfs=list(req.rootfs),
                pid=pid,
                io=ev.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal),
            ),
        )
        return pb.CreateTaskResponse(pid=pid)

    def _fork(self, plan: RunPlan, io: ProcessIO) -> tuple[socket.socket, int]:
        """Fork the runner (from this, the loop's thread: PR_SET_PDEATHSIG follows the forking thread)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stdio = (io.stdio.stdin, io.stdio.stdout, io.stdio.stderr)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:
            runner.run(plan, theirs.fileno(), stdio, address=self._address, namespace=self._namespace)
        theirs.close()
        io.handed_over()  # the runner has its ends: drop ours, start the pumps
        ours.setblocking(False)
        return ours, pid

    @staticmethod
    async def _ready(ctl: socket.socket) -> str:
        """The runner's first line: ``ok``, or ``error <message>``."""
        loop = asyncio.get_running_loop()
        data = b""
        async with asyncio.timeout(READY_TIMEOUT):
            while not data.endswith(b"\n"):
                chunk = await loop.sock_recv(ctl, 4096)
                if not chunk:
                    return "error the wasm runner exited before it was ready"
                data += chunk
        return data.decode(errors="replace").strip()

    async def start(self, ctx: Any, req: pb.StartRequest) -> pb.StartResponse:
        c, proc = self._process(req)
        proc.check(Event.START)
        try:
            c.ctl.send(b"g")
        except OSError as exc:
            raise FailedPrecondition(f"wasm task {req.id}: the runner is gone: {exc}") from exc
        # No await between the go and TaskStart: the exit (a reaper event) cannot overtake it.
        proc.transition(Event.START)
        self._publish("/tasks/start", ev.TaskStart(container_id=req.id, pid=proc.pid))
        return pb.StartResponse(pid=proc.pid)

    async def state(self, ctx: Any, req: pb.StateRequest) -> pb.StateResponse:
        c, proc = self._process(req)
        out = pb.StateResponse(
            id=c.id,
            bundle=c.bundle,
            pid=proc.pid,
            status=proc.status_code,  # type: ignore[arg-type]
            stdin=proc.stdin,
            stdout=proc.stdout,
            stderr=proc.stderr,
            terminal=proc.terminal,
            exit_status=proc.exit_status,
        )
        if proc.exited_at_ns:
            out.exited_at.CopyFrom(pbtime.timestamp(proc.exited_at_ns))
        return out

    async def kill(self, ctx: Any, req: pb.KillRequest) -> empty_pb2.Empty:
        _, proc = self._process(req)
        proc.check_kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, req.signal)
        return empty_pb2.Empty()

    async def wait(self, ctx: Any, req: pb.WaitRequest) -> pb.WaitResponse:
        c, proc = self._process(req)
        if proc.state not in (State.STOPPED, State.DELETED):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            c.waiters.append(fut)
            await fut
        return pb.WaitResponse(exit_status=proc.exit_status, exited_at=pbtime.timestamp(proc.exited_at_ns))

    async def delete(self, ctx: Any, req: pb.DeleteRequest) -> pb.DeleteResponse:
        c, proc = self._process(req)
        if proc.state is State.CREATED:
            # Never started: the runner waits for a go that will not come.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.wait(ctx, pb.WaitRequest(id=req.id))
        proc.check(Event.DELETE)
        if c.io is not None:
            await c.io.close()
        c.ctl.close()
        if c.rootfs_mounted:
            await asyncio.to_thread(mounting.unmount_all, os.path.join(c.bundle, "rootfs"))
        proc.transition(Event.DELETE)
        del self._containers[req.id]
        self._publish(
            "/tasks/delete",
            ev.TaskDelete(
                container_id=c.id,
                id=c.id,
                pid=proc.pid,
                exit_status=proc.exit_status,
                exited_at=pbtime.timestamp(proc.exited_at_ns),
            ),
        )
        return pb.DeleteResponse(
            pid=proc.pid, exit_status=proc.exit_status, exited_at=pbtime.timestamp(proc.exited_at_ns)
        )

    async def pids(self, ctx: Any, req: pb.PidsRequest) -> pb.PidsResponse:
        _, proc = self._process(req)
        alive = proc.state in (State.CREATED, State.RUNNING, State.PAUSED)
        return pb.PidsResponse(processes=[task_pb2.ProcessInfo(pid=proc.pid)] if alive else [])

    async def pause(self, ctx: Any, req: pb.PauseRequest) -> empty_pb2.Empty:
        c, proc = self._process(req)
        proc.check(Event.PAUSE)
        os.kill(proc.pid, signal.SIGSTOP)
        proc.transition(Event.PAUSE)
        self._publish("/tasks/paused", ev.TaskPaused(container_id=c.id))
        return empty_pb2.Empty()

    async def resume(self, ctx: Any, req: pb.ResumeRequest) -> empty_pb2.Empty:
        c, proc = self._process(req)
        proc.check(Event.RESUME)
        os.kill(proc.pid, signal.SIGCONT)
        proc.transition(Event.RESUME)
        self._publish("/tasks/resumed", ev.TaskResumed(container_id=c.id))
        return empty_pb2.Empty()

    async def resize_pty(self, ctx: Any, req: pb.ResizePtyRequest) -> empty_pb2.Empty:
        self._process(req)  # a wasm task has no pty: its "terminal" is the plain stdio
        return empty_pb2.Empty()

    async def close_io(self, ctx: Any, req: pb.CloseIORequest) -> empty_pb2.Empty:
        c, _ = self._process(req)
        if req.stdin and c.io is not None:
            await c.io.close_stdin()
        return empty_pb2.Empty()

    async def connect(self, ctx: Any, req: pb.ConnectRequest) -> pb.ConnectResponse:
        task_pid = self._containers[req.id].init.pid if req.id in self._containers else 0
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=task_pid, version=self._version)

    async def shutdown(self, ctx: Any, req: pb.ShutdownRequest) -> empty_pb2.Empty:
        if self._containers and not req.now:
            return empty_pb2.Empty()  # still serving other containers of the group
        self._on_empty()
        return empty_pb2.Empty()

    def kill_all(self) -> None:
        """SIGKILL every runner (the shim is going away; its runners would die with it anyway)."""
        for c in self._containers.values():
            if c.init.pid and c.init.state in (State.CREATED, State.RUNNING, State.PAUSED):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.init.pid, signal.SIGKILL)
