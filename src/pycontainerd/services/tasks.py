"""``containerd.services.tasks.v1.Tasks``: tasks through runtime v2 shims."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd import filters
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.errdefs import InvalidArgument, NotFound, Unavailable, Unimplemented
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import timestamp

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.runtime.v2.manager import TaskManager


def process_from_state(container_id: str, state: shim_pb2.StateResponse) -> task_pb2.Process:
    """A shim state as the Tasks API reports a process."""
    proc = task_pb2.Process(
        container_id=container_id,
        id=state.exec_id or container_id,
        pid=state.pid,
        status=state.status,
        stdin=state.stdin,
        stdout=state.stdout,
        stderr=state.stderr,
        terminal=state.terminal,
        exit_status=state.exit_status,
    )
    if state.HasField("exited_at"):
        proc.exited_at.CopyFrom(state.exited_at)
    return proc


class TasksService(pb_grpc.TasksServicer):
    """Tasks: create through a shim, then forward every call to it."""

    def __init__(self, metadata: Metadata, manager: TaskManager) -> None:
        self._metadata = metadata
        self._manager = manager

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_TasksServicer_to_server(self, server)

    async def Create(self, request: pb.CreateTaskRequest, context: Any) -> pb.CreateTaskResponse:
        ctx = request_context(context)
        container = self._metadata.containers.get(ctx, request.container_id)
        if request.HasField("checkpoint") and request.checkpoint.digest:
            raise Unimplemented("restoring from a checkpoint is not implemented")
        options = None
        if request.HasField("options"):
            options = request.options.SerializeToString()
        elif container.runtime.options is not None:
            from google.protobuf import any_pb2

            options = any_pb2.Any(
                type_url=container.runtime.options.type_url, value=container.runtime.options.value
            ).SerializeToString()
        task = await self._manager.create(
            ctx,
            container,
            rootfs=list(request.rootfs),
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
            terminal=request.terminal,
            options=options,
            runtime_path=request.runtime_path,
        )
        return pb.CreateTaskResponse(container_id=container.id, pid=task.pid)

    async def Start(self, request: pb.StartRequest, context: Any) -> pb.StartResponse:
        reply = await self._manager.call(
            request_context(context),
            request.container_id,
            "Start",
            shim_pb2.StartRequest(id=request.container_id, exec_id=request.exec_id),
            shim_pb2.StartResponse,
        )
        return pb.StartResponse(pid=reply.pid)  # type: ignore[attr-defined]

    async def Delete(self, request: pb.DeleteTaskRequest, context: Any) -> pb.DeleteResponse:
        reply = await self._manager.delete(request_context(context), request.container_id)
        out = pb.DeleteResponse(id=request.container_id, pid=reply.pid, exit_status=reply.exit_status)
        out.exited_at.CopyFrom(reply.exited_at)
        return out

    async def DeleteProcess(self, request: pb.DeleteProcessRequest, context: Any) -> pb.DeleteResponse:
        if not request.exec_id:
            raise InvalidArgument("exec_id is required; use Delete for the task itself")
        reply = await self._manager.call(
            request_context(context),
            request.container_id,
            "Delete",
            shim_pb2.DeleteRequest(id=request.container_id, exec_id=request.exec_id),
            shim_pb2.DeleteResponse,
        )
        out = pb.DeleteResponse(id=request.exec_id, pid=reply.pid, exit_status=reply.exit_status)  # type: ignore[attr-defined]
        out.exited_at.CopyFrom(reply.exited_at)  # type: ignore[attr-defined]
        return out

    async def _state(self, ctx: Any, container_id: str, exec_id: str = "") -> task_pb2.Process:
        state = await self._manager.call(
            ctx, container_id, "State", shim_pb2.StateRequest(id=container_id, exec_id=exec_id), shim_pb2.StateResponse
        )
        return process_from_state(container_id, state)  # type: ignore[arg-type]

    async def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        ctx = request_context(context)
        return pb.GetResponse(process=await self._state(ctx, request.container_id, request.exec_id))

    async def List(self, request: pb.ListTasksRequest, context: Any) -> pb.ListTasksResponse:
        ctx = request_context(context)
        parsed = filters.parse_all([request.filter]) if request.filter else []
        out = []
        for task in self._manager.list(ctx):
            try:
                proc = await self._state(ctx, task.id)
            except (NotFound, Unavailable):
                continue  # gone, or its shim just died (being cleaned up)

            def field(path: Any, p: task_pb2.Process = proc) -> str | None:
                if list(path) in (["id"], ["container_id"]):
                    return p.container_id
                if list(path) == ["status"]:
                    return task_pb2.Status.Name(p.status).lower()
                return None

            if filters.match_any(parsed, field):
                out.append(proc)
        return pb.ListTasksResponse(tasks=out)

    async def Kill(self, request: pb.KillRequest, context: Any) -> empty_pb2.Empty:
        await self._manager.call(
            request_context(context),
            request.container_id,
            "Kill",
            shim_pb2.KillRequest(
                id=request.container_id, exec_id=request.exec_id, signal=request.signal, all=request.all
            ),
            empty_pb2.Empty,
        )
        return empty_pb2.Empty()

    async def Exec(self, request: pb.ExecProcessRequest, context: Any) -> empty_pb2.Empty:
        if not request.exec_id:
            raise InvalidArgument("exec_id must not be empty")
        shim_req = shim_pb2.ExecProcessRequest(
            id=request.container_id,
            exec_id=request.exec_id,
            terminal=request.terminal,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
        )
        if request.HasField("spec"):
            shim_req.spec.CopyFrom(request.spec)
        await self._manager.call(request_context(context), request.container_id, "Exec", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def ResizePty(self, request: pb.ResizePtyRequest, context: Any) -> empty_pb2.Empty:
        shim_req = shim_pb2.ResizePtyRequest(
            id=request.container_id, exec_id=request.exec_id, width=request.width, height=request.height
        )
        await self._manager.call(request_context(context), request.container_id, "ResizePty", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def CloseIO(self, request: pb.CloseIORequest, context: Any) -> empty_pb2.Empty:
        shim_req = shim_pb2.CloseIORequest(id=request.container_id, exec_id=request.exec_id, stdin=request.stdin)
        await self._manager.call(request_context(context), request.container_id, "CloseIO", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def Pause(self, request: pb.PauseTaskRequest, context: Any) -> empty_pb2.Empty:
        shim_req = shim_pb2.PauseRequest(id=request.container_id)
        await self._manager.call(request_context(context), request.container_id, "Pause", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def Resume(self, request: pb.ResumeTaskRequest, context: Any) -> empty_pb2.Empty:
        shim_req = shim_pb2.ResumeRequest(id=request.container_id)
        await self._manager.call(request_context(context), request.container_id, "Resume", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def ListPids(self, request: pb.ListPidsRequest, context: Any) -> pb.ListPidsResponse:
        reply = await self._manager.call(
            request_context(context),
            request.container_id,
            "Pids",
            shim_pb2.PidsRequest(id=request.container_id),
            shim_pb2.PidsResponse,
        )
        return pb.ListPidsResponse(processes=list(reply.processes))  # type: ignore[attr-defined]

    async def Checkpoint(self, request: pb.CheckpointTaskRequest, context: Any) -> pb.CheckpointTaskResponse:
        raise Unimplemented("checkpoint is not implemented")

    async def Update(self, request: pb.UpdateTaskRequest, context: Any) -> empty_pb2.Empty:
        shim_req = shim_pb2.UpdateTaskRequest(id=request.container_id, annotations=dict(request.annotations))
        if request.HasField("resources"):
            shim_req.resources.CopyFrom(request.resources)
        await self._manager.call(request_context(context), request.container_id, "Update", shim_req, empty_pb2.Empty)
        return empty_pb2.Empty()

    async def Metrics(self, request: pb.MetricsRequest, context: Any) -> pb.MetricsResponse:
        from pycontainerd.api.containerd.types import metrics_pb2

        ctx = request_context(context)
        out = []
        for task in self._manager.list(ctx):
            reply = await task.client.call("Stats", shim_pb2.StatsRequest(id=task.id), shim_pb2.StatsResponse)
            metric = metrics_pb2.Metric(id=task.id, timestamp=timestamp(time.time_ns()))
            metric.data.CopyFrom(reply.stats)
            out.append(metric)
        return pb.MetricsResponse(metrics=out)

    async def Wait(self, request: pb.WaitRequest, context: Any) -> pb.WaitResponse:
        reply = await self._manager.wait(request_context(context), request.container_id, request.exec_id)
        out = pb.WaitResponse(exit_status=reply.exit_status)
        out.exited_at.CopyFrom(reply.exited_at)
        return out


def _init(ctx: InitContext) -> TasksService:
    return TasksService(ctx.plugins.first(types.METADATA), ctx.plugins.first(types.RUNTIME_V2))


REGISTRATION = Registration(type=types.GRPC, id="tasks", init=_init, requires=(types.METADATA, types.RUNTIME_V2))
