"""The shim's Task API (``containerd.task.v2.Task``) over runc.

One shim can serve several containers (a pod's, or any group), each with its init process
and exec processes. Exits arrive from the reaper; events go to the daemon through a
publisher callback (``Events/Forward`` on ``TTRPC_ADDRESS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd import __version__, pbtime
from pycontainerd.aio import spawn as spawn_task
from pycontainerd.api.containerd.events import task_pb2 as ev
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as pb
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.core.snapshots import Mount as CoreMount
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.runc_shim import checkpoint as cr
from pycontainerd.runc_shim import idmounts
from pycontainerd.runc_shim.cgroups_v2 import task_metrics
from pycontainerd.runc_shim.console import Console, ConsoleSocket, resize
from pycontainerd.runc_shim.oom import OOMWatcher
from pycontainerd.runc_shim.pipeio import ProcessIO
from pycontainerd.runc_shim.process import Event, Process, State
from pycontainerd.runc_shim.runc import CriuOptions, Runc, RuncError
from pycontainerd.snapshots import mount as mounting

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from google.protobuf.message import Message

    from pycontainerd.runc_shim.reaper import Reaper

log = logging.getLogger(__name__)
RUNC_OPTIONS = "containerd.runc.v1.Options"
RUNC_ROOT_FILE = "runc-root"


async def _with_console(
    terminal: bool, run: Callable[[str], Awaitable[None]], stdin: str, stdout: str
) -> Console | None:
    """Run a runc create/exec, with a console socket when ``terminal``; returns the console."""
    if not terminal:
        await run("")
        return None
    sock = ConsoleSocket()
    try:
        receiving = asyncio.ensure_future(asyncio.to_thread(sock.receive_master))
        try:
            await run(sock.path)
        except BaseException:
            receiving.cancel()
            raise
        master = await receiving
    finally:
        sock.close()
    return Console(master, stdin, stdout)


def _write_small(path: str, text: str) -> None:
    """Write a few bytes (on tmpfs: not worth a thread)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read_pid(path: str) -> int:
    """The PID runc wrote (a few bytes on tmpfs: not worth a thread)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(os.read(fd, 64).decode().strip())
    finally:
        os.close(fd)


def mount_rootfs(mounts: list[Any], target: str) -> None:
    """Mount the rootfs mounts onto ``target`` (long overlay lowerdirs are compacted, never cut)."""
    core = [CoreMount(type=m.type, source=m.source, options=tuple(m.options), target=m.target) for m in mounts]
    try:
        mounting.mount_all(core, target)
    except OSError as exc:
        raise FailedPrecondition(f"failed to mount rootfs component: {exc}") from exc


def unmount_rootfs(target: str) -> None:
    """Unmount everything on ``target``."""
    mounting.unmount_all(target)


@dataclass(slots=True)
class Container:
    """One container the shim runs."""

    id: str
    bundle: str
    runc: Runc
    init: Process
    rootfs_mounted: bool = False
    execs: dict[str, Process] = field(default_factory=dict)
    exec_specs: dict[str, bytes] = field(default_factory=dict)
    ios: dict[str, ProcessIO] = field(default_factory=dict)
    waiters: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)
    consoles: dict[str, Console] = field(default_factory=dict)
    oom: OOMWatcher | None = None
    # Set while a task created from a checkpoint waits for Start, which runs `runc restore`.
    restore: CriuOptions | None = None
    # Owner of the stdio pipes (runc options IoUid/IoGid: a user namespace's root).
    io_owner: tuple[int, int] | None = None

    def process(self, exec_id: str) -> Process:
        if not exec_id:
            return self.init
        proc = self.execs.get(exec_id)
        if proc is None:
            raise NotFound(f"process {exec_id} does not exist")
        return proc


class TaskService:
    """Implements the Task API for the containers of this shim."""

    def __init__(
        self,
        reaper: Reaper,
        *,
        namespace: str,
        runc_root: str,
        publish: Callable[[str, Message], None],
        on_empty: Callable[[], None],
    ) -> None:
        self._reaper = reaper
        self._namespace = namespace
        self._runc_root = runc_root
        self._publish = publish
        self._on_empty = on_empty
        self._containers: dict[str, Container] = {}
        # Exits of PIDs not (yet) known: a short exec can exit before its pid file is read.
        self._unclaimed: dict[int, int] = {}
        self._starting: set[int] = set()  # init pids being started: their exits wait for TaskStart
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
            "Checkpoint": (pb.CheckpointTaskRequest, self.checkpoint),
            "Kill": (pb.KillRequest, self.kill),
            "Exec": (pb.ExecProcessRequest, self.exec),
            "ResizePty": (pb.ResizePtyRequest, self.resize_pty),
            "CloseIO": (pb.CloseIORequest, self.close_io),
            "Update": (pb.UpdateTaskRequest, self.update),
            "Wait": (pb.WaitRequest, self.wait),
            "Stats": (pb.StatsRequest, self.stats),
            "Connect": (pb.ConnectRequest, self.connect),
            "Shutdown": (pb.ShutdownRequest, self.shutdown),
        }

    def _get(self, cid: str) -> Container:
        c = self._containers.get(cid)
        if c is None:
            raise NotFound(f"container {cid}: not found")
        return c

    async def _watch_exits(self) -> None:
        while True:
            pid, status = await self._exits.get()
            if pid in self._starting or not self._deliver(pid, status):
                self._unclaimed[pid] = status
                if len(self._unclaimed) > 1024:
                    self._unclaimed.pop(next(iter(self._unclaimed)))

    def _deliver(self, pid: int, status: int) -> bool:
        """Record an exit on the process with ``pid``; False if no process has it."""
        found = False
        for c in list(self._containers.values()):
            for exec_id, proc in [("", c.init), *c.execs.items()]:
                if proc.pid == pid and proc.exited(status):
                    found = True
                    self._closed(c, exec_id)
                    if not exec_id and c.oom is not None:
                        c.oom.check()  # an OOM kill is reported before the exit it caused
                    if not exec_id:
                        # The init's exit ends the container: kill what is left of its execs.
                        for other in c.execs.values():
                            if other.state in (State.RUNNING, State.PAUSED) and other.pid:
                                with contextlib.suppress(ProcessLookupError):
                                    os.kill(other.pid, signal.SIGKILL)
                    self._publish(
                        "/tasks/exit",
                        ev.TaskExit(
                            container_id=c.id,
                            id=exec_id or c.id,
                            pid=pid,
                            exit_status=status,
                            exited_at=pbtime.timestamp(proc.exited_at_ns),
                        ),
                    )
        return found

    def _closed(self, c: Container, exec_id: str) -> None:
        for fut in c.waiters.pop(exec_id, []):
            if not fut.done():
                fut.set_result(None)

    async def create(self, ctx: Any, req: pb.CreateTaskRequest) -> pb.CreateTaskResponse:
        if req.id in self._containers:
            raise AlreadyExists(f"container {req.id}")
        rootfs = os.path.join(req.bundle, "rootfs")
        binary, root, criu_work = "runc", self._runc_root, ""
        io_owner: tuple[int, int] | None = None
        if req.HasField("options") and req.options.type_url.endswith(RUNC_OPTIONS):
            # containerd.runc.v1.Options: BinaryName picks another OCI runtime (crun, runsc...).
            opts = oci_pb2.Options.FromString(req.options.value)
            binary, root, criu_work = opts.binary_name or binary, opts.root or root, opts.criu_work_path
            io_owner = (opts.io_uid, opts.io_gid) if opts.io_uid or opts.io_gid else None
        elif req.HasField("options") and req.options.type_url.endswith(idmounts.LEGACY_CREATE_OPTIONS):
            io_owner = idmounts.legacy_io_owner(req.options.value)
        runc = Runc(
            self._reaper,
            os.path.join(root, self._namespace),
            binary=binary,
            log_path=os.path.join(req.bundle, "log.json"),
        )
        os.makedirs(runc.root, mode=0o711, exist_ok=True)
        # `shim delete` (after a crash) must find the container in the same runc root.
        _write_small(os.path.join(req.bundle, RUNC_ROOT_FILE), runc.root)
        mounted = False
        if req.rootfs:
            await asyncio.to_thread(mount_rootfs, list(req.rootfs), rootfs)
            mounted = True
        pid, console, restore = 0, None, None
        io = ProcessIO() if req.terminal else None
        try:
            await asyncio.to_thread(idmounts.prepare, req.bundle, binary)
            if io is None:
                io = ProcessIO.open(req.stdin, req.stdout, req.stderr, owner=io_owner)
            if req.checkpoint:
                # As the Go shim: nothing runs until Start, which restores (the task is "created", PID 0).
                restore = cr.restore_options(req.checkpoint, req.bundle, criu_work)
            else:
                pid_file = os.path.join(req.bundle, "init.pid")
                stdio = io.stdio
                console = await _with_console(
                    req.terminal,
                    lambda sock: runc.create(req.id, req.bundle, pid_file=pid_file, stdio=stdio, console_socket=sock),
                    req.stdin,
                    req.stdout,
                )
                pid = _read_pid(pid_file)
                io.handed_over()
        except BaseException:
            if io is not None:
                io.abort()
            await asyncio.to_thread(idmounts.release, req.bundle)
            if mounted:
                await asyncio.to_thread(unmount_rootfs, rootfs)
            raise
        init = Process(req.id, pid=pid, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal)
        c = Container(req.id, req.bundle, runc, init, rootfs_mounted=mounted, restore=restore, io_owner=io_owner)
        c.ios[""] = io
        if pid:
            self._watch_oom(c)
        if console is not None:
            c.consoles[""] = console
        self._containers[req.id] = c
        self._publish(
            "/tasks/create",
            ev.TaskCreate(
                container_id=req.id,
                bundle=req.bundle,
                rootfs=list(req.rootfs),
                pid=pid,
                io=ev.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal),
                checkpoint=req.checkpoint,
            ),
        )
        return pb.CreateTaskResponse(pid=pid)

    def _watch_oom(self, c: Container) -> None:
        container_id = c.id
        c.oom = OOMWatcher(c.init.pid, lambda: self._publish("/tasks/oom", ev.TaskOOM(container_id=container_id)))

    async def _restore(self, c: Container, restore: CriuOptions) -> None:
        """Start of a task created from a checkpoint: ``runc restore`` with the stdio made at Create."""
        io = c.ios[""]
        pid_file = os.path.join(c.bundle, "init.pid")
        stdio, runc = io.stdio, c.runc
        try:
            console = await _with_console(
                c.init.terminal,
                lambda sock: runc.restore(c.id, c.bundle, restore, pid_file=pid_file, stdio=stdio, console_socket=sock),
                c.init.stdin,
                c.init.stdout,
            )
        except RuncError as exc:
            log_path = cr.keep_log(restore.work_path, cr.RESTORE_LOG, c.bundle)
            raise FailedPrecondition(cr.failure_message(str(exc), log_path)) from exc
        c.restore = None
        c.init.pid = _read_pid(pid_file)
        io.handed_over()
        if console is not None:
            c.consoles[""] = console
        self._watch_oom(c)

    async def start(self, ctx: Any, req: pb.StartRequest) -> pb.StartResponse:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        proc.check(Event.START)
        if not req.exec_id:
            # An exit seen while runc starts the process is held back: TaskStart comes first.
            starting = proc.pid
            self._starting.add(starting)
            try:
                if c.restore is not None:
                    await self._restore(c, c.restore)
                else:
                    await c.runc.start(req.id)
            finally:
                self._starting.discard(starting)
            if proc.state is State.CREATED:
                proc.transition(Event.START)
            self._publish("/tasks/start", ev.TaskStart(container_id=req.id, pid=proc.pid))
            status = self._unclaimed.pop(proc.pid, None)
            if status is not None:  # a quick (or restored) process that died at once
                self._deliver(proc.pid, status)
            return pb.StartResponse(pid=proc.pid)
        if c.init.state is not State.RUNNING:
            raise FailedPrecondition(f"container {req.id} is not running")
        io = ProcessIO() if proc.terminal else ProcessIO.open(proc.stdin, proc.stdout, proc.stderr, owner=c.io_owner)
        pid_file = os.path.join(c.bundle, f"{req.exec_id}.pid")
        spec = c.exec_specs[req.exec_id]
        stdio = io.stdio
        try:
            console = await _with_console(
                proc.terminal,
                lambda sock: c.runc.exec(req.id, spec, pid_file=pid_file, stdio=stdio, console_socket=sock),
                proc.stdin,
                proc.stdout,
            )
            proc.pid = _read_pid(pid_file)
        except BaseException:
            io.abort()
            raise
        io.handed_over()
        c.ios[req.exec_id] = io
        if console is not None:
            c.consoles[req.exec_id] = console
        if proc.state is State.CREATED:
            proc.transition(Event.START)
        # Its exit, if it came during runc exec (the pid unknown then), follows TaskExecStarted.
        self._publish("/tasks/exec-started", ev.TaskExecStarted(container_id=req.id, exec_id=req.exec_id, pid=proc.pid))
        status = self._unclaimed.pop(proc.pid, None)
        if status is not None:
            self._deliver(proc.pid, status)
        return pb.StartResponse(pid=proc.pid)

    async def exec(self, ctx: Any, req: pb.ExecProcessRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        if req.exec_id in c.execs:
            raise AlreadyExists(f"id {req.exec_id}")
        c.execs[req.exec_id] = Process(
            req.id, req.exec_id, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
        )
        c.exec_specs[req.exec_id] = req.spec.value
        self._publish("/tasks/exec-added", ev.TaskExecAdded(container_id=req.id, exec_id=req.exec_id))
        return empty_pb2.Empty()

    async def state(self, ctx: Any, req: pb.StateRequest) -> pb.StateResponse:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        out = pb.StateResponse(
            id=req.exec_id or req.id,
            bundle=c.bundle,
            pid=proc.pid,
            status=proc.status_code,  # type: ignore[arg-type]
            stdin=proc.stdin,
            stdout=proc.stdout,
            stderr=proc.stderr,
            terminal=proc.terminal,
            exit_status=proc.exit_status,
            exec_id=req.exec_id,
        )
        if proc.exited_at_ns:
            out.exited_at.CopyFrom(pbtime.timestamp(proc.exited_at_ns))
        return out

    async def kill(self, ctx: Any, req: pb.KillRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        proc.check_kill()
        if req.exec_id:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, req.signal)
        else:
            await c.runc.kill(req.id, req.signal, all_processes=req.all)
        return empty_pb2.Empty()

    async def wait(self, ctx: Any, req: pb.WaitRequest) -> pb.WaitResponse:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        if proc.state not in (State.STOPPED, State.DELETED):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            c.waiters.setdefault(req.exec_id, []).append(fut)
            await fut
        return pb.WaitResponse(exit_status=proc.exit_status, exited_at=pbtime.timestamp(proc.exited_at_ns))

    async def delete(self, ctx: Any, req: pb.DeleteRequest) -> pb.DeleteResponse:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        if proc.state is State.CREATED and not req.exec_id and c.restore is None:
            await c.runc.kill(req.id, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wait_stopped(c, proc), 10)
        proc.check(Event.DELETE)
        io = c.ios.pop(req.exec_id, None)
        if io is not None:
            await io.close()
        console = c.consoles.pop(req.exec_id, None)
        if console is not None:
            console.close()
        if req.exec_id:
            proc.transition(Event.DELETE)
            del c.execs[req.exec_id]
        else:
            if c.oom is not None:
                c.oom.close()
            # After `checkpoint --exit` (or a restore that never ran) runc has nothing left to delete.
            with contextlib.suppress(NotFound):
                await c.runc.delete(req.id, force=True)
            await asyncio.to_thread(idmounts.release, c.bundle)
            if c.rootfs_mounted:
                await asyncio.to_thread(unmount_rootfs, os.path.join(c.bundle, "rootfs"))
            proc.transition(Event.DELETE)
            del self._containers[req.id]
            self._publish(
                "/tasks/delete",
                ev.TaskDelete(
                    container_id=req.id,
                    id=req.id,
                    pid=proc.pid,
                    exit_status=proc.exit_status,
                    exited_at=pbtime.timestamp(proc.exited_at_ns),
                ),
            )
        return pb.DeleteResponse(
            pid=proc.pid, exit_status=proc.exit_status, exited_at=pbtime.timestamp(proc.exited_at_ns)
        )

    async def _wait_stopped(self, c: Container, proc: Process) -> None:
        while proc.state not in (State.STOPPED, State.DELETED):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            c.waiters.setdefault(proc.exec_id, []).append(fut)
            await fut

    async def pids(self, ctx: Any, req: pb.PidsRequest) -> pb.PidsResponse:
        c = self._get(req.id)
        pids = await c.runc.ps(req.id)
        return pb.PidsResponse(processes=[task_pb2.ProcessInfo(pid=p) for p in pids])

    async def pause(self, ctx: Any, req: pb.PauseRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        c.init.check(Event.PAUSE)
        await c.runc.pause(req.id)
        c.init.transition(Event.PAUSE)
        self._publish("/tasks/paused", ev.TaskPaused(container_id=req.id))
        return empty_pb2.Empty()

    async def resume(self, ctx: Any, req: pb.ResumeRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        c.init.check(Event.RESUME)
        await c.runc.resume(req.id)
        c.init.transition(Event.RESUME)
        self._publish("/tasks/resumed", ev.TaskResumed(container_id=req.id))
        return empty_pb2.Empty()

    async def checkpoint(self, ctx: Any, req: pb.CheckpointTaskRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        if c.init.state is State.CREATED:
            raise FailedPrecondition("cannot checkpoint a task in created state")
        if c.init.state in (State.STOPPED, State.DELETED):
            raise FailedPrecondition("cannot checkpoint a stopped container")
        todo = cr.plan(req.path, req.options if req.HasField("options") else None, c.bundle)
        try:
            await c.runc.checkpoint(req.id, todo.criu, leave_running=not todo.exit)
        except RuncError as exc:
            log_path = cr.keep_log(todo.criu.work_path, cr.DUMP_LOG, c.bundle)
            raise FailedPrecondition(cr.failure_message(str(exc), log_path)) from exc
        finally:
            cr.remove_work(todo)
        # With exit, CRIU killed the container: its exit arrives through the reaper like any other.
        return empty_pb2.Empty()

    async def resize_pty(self, ctx: Any, req: pb.ResizePtyRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        c.process(req.exec_id)
        console = c.consoles.get(req.exec_id)
        if console is None:
            raise FailedPrecondition("the process has no terminal")
        resize(console.master, req.width, req.height)
        return empty_pb2.Empty()

    async def close_io(self, ctx: Any, req: pb.CloseIORequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        proc = c.process(req.exec_id)
        io = c.ios.get(req.exec_id)
        if req.stdin and proc.stdin and io is not None:
            await io.close_stdin()
        return empty_pb2.Empty()

    async def update(self, ctx: Any, req: pb.UpdateTaskRequest) -> empty_pb2.Empty:
        c = self._get(req.id)
        if not req.HasField("resources"):
            raise InvalidArgument("resources must be set")
        await c.runc.update(req.id, req.resources.value)
        return empty_pb2.Empty()

    async def stats(self, ctx: Any, req: pb.StatsRequest) -> pb.StatsResponse:
        c = self._get(req.id)
        data = await asyncio.to_thread(task_metrics, c.init.pid)
        stats = any_pb2.Any(type_url=data.DESCRIPTOR.full_name, value=data.SerializeToString())
        return pb.StatsResponse(stats=stats)

    async def connect(self, ctx: Any, req: pb.ConnectRequest) -> pb.ConnectResponse:
        task_pid = self._containers[req.id].init.pid if req.id in self._containers else 0
        return pb.ConnectResponse(shim_pid=os.getpid(), task_pid=task_pid, version=f"pyrunc-{__version__}")

    async def shutdown(self, ctx: Any, req: pb.ShutdownRequest) -> empty_pb2.Empty:
        if self._containers and not req.now:
            return empty_pb2.Empty()  # still serving other containers of the group
        self._on_empty()
        return empty_pb2.Empty()
