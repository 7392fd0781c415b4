"""``containerd.services.tasks.v1.Tasks``: tasks through runtime v2 shims."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd import filters
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2 as pb
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.archive.tar import ApplyOptions, apply_tar
from pycontainerd.content.reader import open_blob
from pycontainerd.core import checkpoint as ckpt
from pycontainerd.core.content import parse_digest
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from pycontainerd.namespaces import namespace_required
from pycontainerd.plugin import types
from pycontainerd.plugin.registration import InitContext, Registration
from pycontainerd.services._context import request_context
from pycontainerd.services._convert import timestamp
from pycontainerd.services.snapshots import task_rootfs

if TYPE_CHECKING:
    import grpc

    from pycontainerd.metadata.content import ContentStore
    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.runtime.v2.manager import TaskManager

RUNC_OPTIONS = "containerd.runc.v1.Options"
CHECKPOINT_OPTIONS = "containerd.runc.v1.CheckpointOptions"
# A dump writes the task's whole memory: far longer than an ordinary shim call.
CHECKPOINT_TIMEOUT = 660.0


def _type_name(any_value: any_pb2.Any) -> str:
    return any_value.type_url.rsplit("/", 1)[-1]


def checkpoint_image_path(options: any_pb2.Any | None) -> str:
    """The ``image_path`` of runc CheckpointOptions: the client keeps the images there, not in content."""
    if options is None or _type_name(options) != CHECKPOINT_OPTIONS:
        return ""
    return oci_pb2.CheckpointOptions.FromString(options.value).image_path


def restore_image_path(options: any_pb2.Any | None) -> str:
    """The ``criu_image_path`` of runc create Options: restore from images already on disk."""
    if options is None or _type_name(options) != RUNC_OPTIONS:
        return ""
    return oci_pb2.Options.FromString(options.value).criu_image_path


def _write_stream(writer: Any, produce: Any) -> int:
    """Run ``produce(write)`` with ``write`` appending to the content writer (in a thread)."""
    size = 0

    def write(data: bytes) -> None:
        nonlocal size
        writer.write(data)
        size += len(data)

    produce(write)
    return size


def _unpack(backend: Any, digest: str, target: Path) -> None:
    with open_blob(backend, digest) as fh:
        apply_tar(fh, target, ApplyOptions(whiteouts="remove"))


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

    def __init__(self, metadata: Metadata, manager: TaskManager, workdir: Path | None = None) -> None:
        self._metadata = metadata
        self._manager = manager
        # Checkpoint images on their way into (dumps) or out of (restores) the content store.
        self._workdir = workdir or Path(tempfile.gettempdir())
        for stale in self._workdir.glob(f"{ckpt.DUMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)  # a dump interrupted by a daemon crash

    def _content(self) -> ContentStore:
        content = self._metadata.content
        if content is None:
            raise FailedPrecondition("no content store loaded")
        return content

    def _restore_dir(self, ctx: RequestContext, container_id: str) -> Path:
        """Where a task's checkpoint is unpacked: it must live until Start has restored it."""
        return self._workdir / ckpt.RESTORE_DIR / namespace_required(ctx) / container_id

    async def _unpack_checkpoint(self, ctx: RequestContext, container_id: str, desc: Any) -> str:
        if desc.media_type != ckpt.MEDIA_TYPE_CHECKPOINT:
            raise InvalidArgument(f"unsupported checkpoint type {desc.media_type!r}")
        content = self._content()
        digest = parse_digest(desc.digest)
        content.info(ctx, digest)  # NotFound unless the namespace holds it
        target = self._restore_dir(ctx, container_id)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, mode=0o700)
        try:
            await asyncio.to_thread(_unpack, content.backend, digest, target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return str(target)

    def _drop_restore_dir(self, ctx: RequestContext, container_id: str) -> None:
        shutil.rmtree(self._restore_dir(ctx, container_id), ignore_errors=True)

    def register(self, server: grpc.aio.Server) -> None:
        """Add this service to ``server``."""
        pb_grpc.add_TasksServicer_to_server(self, server)

    async def Create(self, request: pb.CreateTaskRequest, context: Any) -> pb.CreateTaskResponse:
        ctx = request_context(context)
        container = self._metadata.containers.get(ctx, request.container_id)
        checkpoint = restore_image_path(request.options if request.HasField("options") else None)
        unpacked = False
        if not checkpoint and request.HasField("checkpoint") and request.checkpoint.digest:
            try:
                self._manager.get(ctx, container.id)
            except NotFound:
                pass
            else:  # never unpack over the images of a task that waits for its Start
                raise AlreadyExists(f"task {container.id}")
            checkpoint = await self._unpack_checkpoint(ctx, container.id, request.checkpoint)
            unpacked = True
        options = None
        if request.HasField("options"):
            options = request.options.SerializeToString()
        elif container.runtime.options is not None:
            from google.protobuf import any_pb2

            options = any_pb2.Any(
                type_url=container.runtime.options.type_url, value=container.runtime.options.value
            ).SerializeToString()
        try:
            task = await self._manager.create(
                ctx,
                container,
                rootfs=task_rootfs(self._metadata, ctx, container, list(request.rootfs)),
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                terminal=request.terminal,
                options=options,
                runtime_path=request.runtime_path,
                checkpoint=checkpoint,
            )
        except BaseException:
            if unpacked:
                self._drop_restore_dir(ctx, container.id)
            raise
        return pb.CreateTaskResponse(container_id=container.id, pid=task.pid)

    async def Start(self, request: pb.StartRequest, context: Any) -> pb.StartResponse:
        ctx = request_context(context)
        reply = await self._manager.call(
            ctx,
            request.container_id,
            "Start",
            shim_pb2.StartRequest(id=request.container_id, exec_id=request.exec_id),
            shim_pb2.StartResponse,
        )
        if not request.exec_id:
            # Shims restore a checkpointed task at Start: its unpacked images are no longer needed.
            self._drop_restore_dir(ctx, request.container_id)
        return pb.StartResponse(pid=reply.pid)  # type: ignore[attr-defined]

    async def Delete(self, request: pb.DeleteTaskRequest, context: Any) -> pb.DeleteResponse:
        ctx = request_context(context)
        try:
            reply = await self._manager.delete(ctx, request.container_id)
        finally:
            self._drop_restore_dir(ctx, request.container_id)
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
        ctx = request_context(context)
        container = self._metadata.containers.get(ctx, request.container_id)
        task = self._manager.get(ctx, container.id)
        options = request.options if request.HasField("options") else None
        image_path = checkpoint_image_path(options)
        if image_path:
            # The client keeps the images at a path of its own: nothing goes to the content store.
            await self._shim_checkpoint(task, image_path, options)
            return pb.CheckpointTaskResponse()
        self._workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        image = tempfile.mkdtemp(prefix=ckpt.DUMP_PREFIX, dir=self._workdir)
        try:
            await self._shim_checkpoint(task, image, options)
            token = uuid.uuid4().hex[:12]
            images = await self._store(
                ctx,
                f"checkpoint-{container.id}-{token}",
                ckpt.MEDIA_TYPE_CHECKPOINT,
                lambda write: ckpt.pack_dir(image, write),
            )
            spec = any_pb2.Any()
            if container.spec is not None:
                spec = any_pb2.Any(type_url=container.spec.type_url, value=container.spec.value)
            data = spec.SerializeToString()
            config = await self._store(
                ctx, f"checkpoint-{container.id}-{token}-spec", ckpt.MEDIA_TYPE_CONFIG, lambda write: write(data)
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, image, True)
        return pb.CheckpointTaskResponse(descriptors=[images, config])

    async def _shim_checkpoint(self, task: Any, path: str, options: any_pb2.Any | None) -> None:
        shim_req = shim_pb2.CheckpointTaskRequest(id=task.id, path=path)
        if options is not None:
            shim_req.options.CopyFrom(options)
        await task.client.call("Checkpoint", shim_req, empty_pb2.Empty, CHECKPOINT_TIMEOUT)

    async def _store(self, ctx: RequestContext, ref: str, media_type: str, produce: Any) -> descriptor_pb2.Descriptor:
        """Write one blob (under the request's lease) and describe it."""
        content = self._content()
        writer = content.writer(ctx, ref)
        try:
            size = await asyncio.to_thread(_write_stream, writer, produce)
            try:
                digest = writer.commit(size, "")
            except AlreadyExists:
                digest = writer.digest()  # the namespace already holds these exact bytes
        except BaseException:
            writer.close()
            with contextlib.suppress(NotFound):
                content.abort(ctx, ref)
            raise
        writer.close()
        return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size)

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
    return TasksService(ctx.plugins.first(types.METADATA), ctx.plugins.first(types.RUNTIME_V2), ctx.root)


REGISTRATION = Registration(type=types.GRPC, id="tasks", init=_init, requires=(types.METADATA, types.RUNTIME_V2))
