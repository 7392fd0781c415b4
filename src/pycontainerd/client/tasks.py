"""Tasks (``containerd.services.tasks.v1``): the running side of a container, and its processes."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2_grpc as pb_grpc
from pycontainerd.client._convert import any_from_pb, any_to_pb, descriptor_from_pb, descriptor_to_pb, mount_to_pb
from pycontainerd.pbtime import from_timestamp

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence

    from pycontainerd.client.connection import Connection
    from pycontainerd.core.containers import AnyValue
    from pycontainerd.core.images import Descriptor
    from pycontainerd.core.snapshots import Mount

PROCESS_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


class Status(enum.IntEnum):
    """A process's state, numbered as on the wire (``containerd.v1.types.Status``)."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


@dataclass(frozen=True, slots=True)
class IO:
    """Where a process's standard streams go: FIFO paths or a log URI (``""``: nowhere)."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class Process:
    """A task's init process (``exec_id`` ``""``) or an exec; times in nanoseconds."""

    container_id: str
    exec_id: str
    pid: int
    status: Status
    io: IO = field(default_factory=IO)
    exit_status: int = 0
    exited_at: int = 0


@dataclass(frozen=True, slots=True)
class Exit:
    """How a process ended; ``exited_at`` in nanoseconds."""

    exit_status: int
    exited_at: int = 0
    pid: int = 0


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One host PID inside the task; ``info`` is runtime-specific (the runc shim names the exec)."""

    pid: int
    info: AnyValue | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    """One sample of a task's cgroup statistics (``data``: cgroups v1 or v2 ``Metrics``)."""

    id: str
    timestamp: int
    data: AnyValue | None


def _process(p: Any) -> Process:
    return Process(
        container_id=p.container_id,
        exec_id=p.id if p.id != p.container_id else "",
        pid=p.pid,
        status=Status(p.status),
        io=IO(p.stdin, p.stdout, p.stderr, p.terminal),
        exit_status=p.exit_status,
        exited_at=from_timestamp(p.exited_at),
    )


class Tasks:
    """The tasks of the connection's namespace."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = pb_grpc.TasksStub(conn.channel())

    async def create(
        self,
        container_id: str,
        *,
        io: IO | None = None,
        rootfs: Sequence[Mount] = (),
        options: AnyValue | None = None,
        checkpoint: Descriptor | None = None,
    ) -> int:
        """Create the container's task (its init process, not started); returns its PID.

        ``rootfs``: the mounts of the container's snapshot (a container without a snapshot key
        brings its own root)."""
        io = io or IO()
        request = pb.CreateTaskRequest(
            container_id=container_id,
            rootfs=[mount_to_pb(m) for m in rootfs],
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            terminal=io.terminal,
        )
        if options is not None:
            request.options.CopyFrom(any_to_pb(options))
        if checkpoint is not None:
            request.checkpoint.CopyFrom(descriptor_to_pb(checkpoint))
        pid: int = (await self._conn.call(self._stub.Create, request)).pid
        return pid

    async def start(self, container_id: str, exec_id: str = "") -> int:
        """Start the init process (or an exec); returns its PID."""
        reply = await self._conn.call(self._stub.Start, pb.StartRequest(container_id=container_id, exec_id=exec_id))
        pid: int = reply.pid
        return pid

    async def get(self, container_id: str, exec_id: str = "") -> Process:
        """The init process (or an exec) and its state; NotFound when there is no task."""
        reply = await self._conn.call(self._stub.Get, pb.GetRequest(container_id=container_id, exec_id=exec_id))
        return _process(reply.process)

    async def list(self, filter: str = "") -> list[Process]:
        """Every task's init process."""
        reply = await self._conn.call(self._stub.List, pb.ListTasksRequest(filter=filter))
        return [_process(p) for p in reply.tasks]

    async def kill(self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False) -> None:
        """Send ``signal`` to the init process (or an exec; ``all``: every process of the task)."""
        request = pb.KillRequest(container_id=container_id, exec_id=exec_id, signal=signal, all=all)
        await self._conn.call(self._stub.Kill, request)

    async def wait(self, container_id: str, exec_id: str = "") -> Exit:
        """Block until the process exits (no deadline)."""
        request = pb.WaitRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._conn.call(self._stub.Wait, request, wait=True)
        return Exit(reply.exit_status, from_timestamp(reply.exited_at))

    async def delete(self, container_id: str) -> Exit:
        """Remove a stopped task (FailedPrecondition while it runs)."""
        reply = await self._conn.call(self._stub.Delete, pb.DeleteTaskRequest(container_id=container_id))
        return Exit(reply.exit_status, from_timestamp(reply.exited_at), reply.pid)

    async def delete_process(self, container_id: str, exec_id: str) -> Exit:
        """Remove an exited exec."""
        request = pb.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._conn.call(self._stub.DeleteProcess, request)
        return Exit(reply.exit_status, from_timestamp(reply.exited_at), reply.pid)

    async def exec(self, container_id: str, exec_id: str, process: dict[str, Any], io: IO | None = None) -> None:
        """Add the process ``process`` (an OCI ``Process`` object) to the task, not started."""
        io = io or IO()
        spec = any_pb2.Any(type_url=PROCESS_SPEC_TYPE_URL, value=json.dumps(process).encode())
        request = pb.ExecProcessRequest(
            container_id=container_id,
            exec_id=exec_id,
            spec=spec,
            stdin=io.stdin,
            stdout=io.stdout,
            stderr=io.stderr,
            terminal=io.terminal,
        )
        await self._conn.call(self._stub.Exec, request)

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the task."""
        await self._conn.call(self._stub.Pause, pb.PauseTaskRequest(container_id=container_id))

    async def resume(self, container_id: str) -> None:
        """Thaw a paused task."""
        await self._conn.call(self._stub.Resume, pb.ResumeTaskRequest(container_id=container_id))

    async def pids(self, container_id: str) -> builtins.list[ProcessInfo]:
        """The host PIDs of the task's processes."""
        reply = await self._conn.call(self._stub.ListPids, pb.ListPidsRequest(container_id=container_id))
        return [ProcessInfo(p.pid, any_from_pb(p.info)) for p in reply.processes]

    async def resize_pty(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        """Set the terminal size of a process started with a terminal."""
        request = pb.ResizePtyRequest(container_id=container_id, exec_id=exec_id, width=width, height=height)
        await self._conn.call(self._stub.ResizePty, request)

    async def close_stdin(self, container_id: str, exec_id: str = "") -> None:
        """Close the process's stdin (it reads end-of-file)."""
        request = pb.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True)
        await self._conn.call(self._stub.CloseIO, request)

    async def checkpoint(self, container_id: str, options: AnyValue | None = None) -> builtins.list[Descriptor]:
        """Checkpoint the task (CRIU); returns the descriptors of what was written to content."""
        request = pb.CheckpointTaskRequest(container_id=container_id)
        if options is not None:
            request.options.CopyFrom(any_to_pb(options))
        reply = await self._conn.call(self._stub.Checkpoint, request, wait=True)
        return [descriptor_from_pb(d) for d in reply.descriptors]

    async def metrics(self, container_ids: Sequence[str] = ()) -> builtins.list[Metric]:
        """One sample per task (of ``container_ids`` when given)."""
        filters = [f"id=={cid}" for cid in container_ids]
        reply = await self._conn.call(self._stub.Metrics, pb.MetricsRequest(filters=filters))
        wanted = set(container_ids)
        return [
            Metric(m.id, from_timestamp(m.timestamp), any_from_pb(m.data))
            for m in reply.metrics
            if not wanted or m.id in wanted
        ]
