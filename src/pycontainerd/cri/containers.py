"""Container RPCs: Create, Start, Stop, Remove, List, Status, UpdateContainerResources, ReopenContainerLog.

CreateContainer makes the writable snapshot and the container record (spec built by
:mod:`.specs`); the task is created and started by StartContainer, with its stdio going to
FIFOs the daemon reads into the CRI log. StopContainer sends the stop signal, waits up to the
timeout, then SIGKILL. RemoveContainer stops a running container first, as containerd does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2, empty_pb2

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.core.containers import AnyValue, Container
from pycontainerd.cri import state, userns
from pycontainerd.cri.images import ImageIndex, ImageInfo
from pycontainerd.cri.specs import build_container_spec, updated_spec
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound
from pycontainerd.metadata.containers import pack_any
from pycontainerd.namespaces import RequestContext
from pycontainerd.oci import spec as oci
from pycontainerd.services.snapshots import mount_to_pb

if TYPE_CHECKING:
    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)

RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
START_ERROR_EXIT = 128


async def create_container(svc: CRIService, request: api.CreateContainerRequest) -> api.CreateContainerResponse:
    """Make a container in a pod; started later by StartContainer."""
    config = request.config
    pod = svc.sandbox(request.pod_sandbox_id)
    if not config.HasField("metadata") or not config.metadata.name:
        raise InvalidArgument("container config must include metadata with a name")
    if pod.state != api.SANDBOX_READY:
        raise FailedPrecondition(f"sandbox {pod.id} is not ready")
    container_id = secrets.token_hex(32)
    name = state.container_name(config.metadata, pod.config.metadata)
    svc.container_names.reserve(name, container_id)
    try:
        return await _create(svc, request, pod, container_id, name)
    except BaseException:
        svc.container_names.release(name)
        raise


async def _create(
    svc: CRIService, request: api.CreateContainerRequest, pod: state.PodSandbox, container_id: str, name: str
) -> api.CreateContainerResponse:
    config = request.config
    image = ImageIndex(svc).get(config.image.image)
    snapshotter_name = svc.config.snapshotter_for(pod.runtime_handler)
    snapshotter = svc.metadata.snapshotters.get(snapshotter_name)
    if snapshotter is None:
        raise NotFound(f"snapshotter {snapshotter_name!r} not loaded")
    lease_id = f"cri-create-{uuid.uuid4().hex[:12]}"
    expire = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    svc.metadata.leases.create(svc.ctx, lease_id, {"containerd.io/gc.expire": expire})
    leased = RequestContext(svc.ctx.namespace, lease_id)
    nri_created = False
    try:
        await ensure_unpacked(svc, leased, image.name, image.chain_id, snapshotter_name)
        parent, labels = await userns.snapshot_parent(svc, leased, snapshotter_name, image.chain_id, pod.config)
        mounts = snapshotter.prepare(leased, container_id, parent, labels)
        try:
            passwd, group = await asyncio.to_thread(_read_user_files, mounts)
            log_path = ""
            if pod.config.log_directory and config.log_path:
                log_path = os.path.join(pod.config.log_directory, config.log_path)
            spec, user = build_container_spec(svc, pod, container_id, config, image, passwd, group)
            handler = svc.config.handler(pod.runtime_handler)
            ctr = state.CRIContainer(
                id=container_id,
                name=name,
                sandbox_id=pod.id,
                config=config,
                image_id=image.id,
                image_ref=repo_digest(image),
                snapshotter=snapshotter_name,
                log_path=log_path,
                created_at=time.time_ns(),
                stop_signal=(image.config.get("config") or {}).get("StopSignal", ""),
                user=user,
            )
            await svc.nri.create_container(pod, ctr, spec)
            nri_created = svc.nri.enabled
            record = Container(
                id=container_id,
                labels={**dict(config.labels), state.KIND_LABEL: "container"},
                image=image.name,
                runtime=handler.runtime(),
                spec=AnyValue(oci.SPEC_TYPE_URL, oci.encode(spec)),
                snapshotter=snapshotter_name,
                snapshot_key=container_id,
                sandbox=pod.id,
                extensions={state.CONTAINER_EXTENSION: AnyValue(state.METADATA_TYPE_URL, ctr.to_json())},
            )
            svc.metadata.containers.create(leased, record)
        except BaseException:
            with contextlib.suppress(NotFound):
                snapshotter.remove(leased, container_id)
            if nri_created:
                await svc.nri.undo_create_container(pod, ctr, spec)
            raise
    finally:
        with contextlib.suppress(NotFound):
            svc.metadata.leases.delete(svc.ctx, lease_id)
    svc.save_status(ctr)
    svc.containers[container_id] = ctr
    svc.emit(container_id, api.CONTAINER_CREATED_EVENT)
    await svc.nri.post_create_container(pod, ctr)
    return api.CreateContainerResponse(container_id=container_id)


async def ensure_unpacked(svc: CRIService, ctx: RequestContext, image_name: str, chain_id: str, name: str) -> None:
    """Unpack the image into snapshotter ``name`` if it is not there yet (a handler's own snapshotter)."""
    snapshotter = svc.metadata.snapshotters[name]
    if not chain_id:
        return
    try:
        snapshotter.stat(ctx, chain_id)
        return
    except NotFound:
        pass
    if svc.transfer is None:
        raise NotFound(f"image {image_name} is not unpacked in {name}")
    from pycontainerd.images.platforms import host_platform
    from pycontainerd.transfer.objects import Unpack

    image = svc.metadata.images.get(ctx, image_name)
    await svc.transfer.unpack(ctx, image.target, Unpack(host_platform(), name), lambda _p: None)


def _read_user_files(mounts: list[Any]) -> tuple[str | None, str | None]:
    """/etc/passwd and /etc/group of a rootfs (mounted read-only for the look)."""
    import tempfile

    from pycontainerd.snapshots.mount import mount_all, unmount_all

    with tempfile.TemporaryDirectory(prefix="pycontainerd-cri-user-") as target:
        ro = [_readonly(m) for m in mounts]
        mount_all(ro, target)
        try:
            return _read_confined(target, "etc/passwd"), _read_confined(target, "etc/group")
        finally:
            unmount_all(target)


def _readonly(m: Any) -> Any:
    from dataclasses import replace

    options = tuple(o for o in m.options if o != "rw")
    return replace(m, options=(*options, "ro") if "ro" not in options else options)


def _read_confined(root: str, relative: str) -> str | None:
    """A file of the rootfs, refusing a path that resolves outside it."""
    path = os.path.realpath(os.path.join(root, relative))
    if not path.startswith(os.path.realpath(root) + os.sep):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


async def start_container(svc: CRIService, request: api.StartContainerRequest) -> api.StartContainerResponse:
    """Create and start the container's task."""
    ctr = svc.container(request.container_id)
    async with svc.lock(ctr.id):
        if ctr.status.state != api.CONTAINER_CREATED or ctr.status.started_at:
            raise FailedPrecondition(f"container {ctr.id} is in {api.ContainerState.Name(ctr.status.state)} state")
        pod = svc.sandbox(ctr.sandbox_id)
        if pod.state != api.SANDBOX_READY:
            raise FailedPrecondition(f"sandbox container {pod.id} is not running")
        record = svc.metadata.containers.get(svc.ctx, ctr.id)
        cio = svc.container_io(ctr)
        try:
            cio.open()
            mounts = svc.metadata.snapshotters[ctr.snapshotter].mounts(svc.ctx, ctr.id)
            await svc.tasks.create(
                svc.ctx,
                record,
                rootfs=[mount_to_pb(m) for m in mounts],
                stdin=cio.stdin_path,
                stdout=cio.stdout_path,
                stderr=cio.stderr_path,
                terminal=ctr.config.tty,
                options=pack_any(record.runtime.options),
            )
            await svc.nri.start_container(pod, ctr)
            reply = await svc.tasks.call(
                svc.ctx, ctr.id, "Start", shim_pb2.StartRequest(id=ctr.id), shim_pb2.StartResponse
            )
            cio.release_hold()
        except BaseException as exc:
            cio.remove()
            with contextlib.suppress(Exception):
                await svc.tasks.delete(svc.ctx, ctr.id)
            ctr.status.state = api.CONTAINER_EXITED
            ctr.status.exit_code = START_ERROR_EXIT
            ctr.status.reason = "StartError"
            ctr.status.message = str(exc)
            ctr.status.started_at = ctr.status.finished_at = time.time_ns()
            svc.save_status(ctr)
            await svc.nri.stop_container(ctr)
            raise
        ctr.io = cio
        ctr.status.state = api.CONTAINER_RUNNING
        ctr.status.pid = int(reply.pid)  # type: ignore[attr-defined]
        ctr.status.started_at = time.time_ns()
        svc.save_status(ctr)
        svc.monitor_container(ctr)
    svc.emit(ctr.id, api.CONTAINER_STARTED_EVENT)
    await svc.nri.post_start_container(pod, ctr)
    return api.StartContainerResponse()


def repo_digest(image: ImageInfo) -> str:
    """``<repository>@<manifest digest>``, what kubelet shows as a container's image reference."""
    from pycontainerd.remotes.reference import parse_reference

    try:
        return f"{parse_reference(image.name).name}@{image.target}"
    except InvalidArgument:
        return image.id


def _stop_signal(ctr: state.CRIContainer) -> int:
    name = ""
    if ctr.config.stop_signal:
        name = api.Signal.Name(ctr.config.stop_signal)
    name = name or ctr.stop_signal or "SIGTERM"
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        return int(signal.SIGTERM)


async def _kill(svc: CRIService, ctr: state.CRIContainer, sig: int) -> None:
    with contextlib.suppress(NotFound):
        await svc.tasks.call(svc.ctx, ctr.id, "Kill", shim_pb2.KillRequest(id=ctr.id, signal=sig), empty_pb2.Empty)


async def _exited(ctr: state.CRIContainer) -> None:
    if ctr.monitor is not None:
        await asyncio.shield(ctr.monitor)


async def stop_container_now(svc: CRIService, ctr: state.CRIContainer, timeout: float) -> None:  # noqa: ASYNC109
    """Stop signal, up to ``timeout`` seconds, then SIGKILL; returns once the exit is recorded."""
    if ctr.status.state != api.CONTAINER_RUNNING or ctr.monitor is None:
        return
    if timeout > 0:
        await _kill(svc, ctr, _stop_signal(ctr))
        try:
            await asyncio.wait_for(_exited(ctr), timeout)
            return
        except TimeoutError:
            pass
    await _kill(svc, ctr, signal.SIGKILL)
    await _exited(ctr)


async def stop_container(svc: CRIService, request: api.StopContainerRequest) -> api.StopContainerResponse:
    """Stop a container (a stopped one is not an error)."""
    ctr = svc.container(request.container_id)
    await stop_container_now(svc, ctr, float(request.timeout))
    await svc.nri.stop_container(ctr)  # once per container: a no-op if its exit already told NRI
    return api.StopContainerResponse()


async def remove_container_now(svc: CRIService, ctr: state.CRIContainer) -> None:
    """Stop (if running) and remove a container, its task, snapshot, FIFOs and status."""
    await stop_container_now(svc, ctr, 0)
    async with svc.lock(ctr.id):
        ctr.status.removing = True
        await svc.nri.remove_container(ctr)
        with contextlib.suppress(NotFound):
            await svc.tasks.delete(svc.ctx, ctr.id)
        with contextlib.suppress(NotFound):
            svc.metadata.containers.delete(svc.ctx, ctr.id)
        snapshotter = svc.metadata.snapshotters.get(ctr.snapshotter)
        if snapshotter is not None:
            with contextlib.suppress(NotFound):
                snapshotter.remove(svc.ctx, ctr.id)
        if ctr.io is not None:
            ctr.io.remove()
        else:
            import shutil

            shutil.rmtree(svc.io_dir(ctr.id), ignore_errors=True)
        svc.status_files.remove(ctr.id)
        svc.containers.pop(ctr.id, None)
        svc.container_names.release(ctr.name)
        svc.metadata.mark_dirty()
    svc.locks.pop(ctr.id, None)
    svc.emit(ctr.id, api.CONTAINER_DELETED_EVENT)


async def remove_container(svc: CRIService, request: api.RemoveContainerRequest) -> api.RemoveContainerResponse:
    """Remove a container; one already gone is not an error."""
    try:
        ctr = svc.container(request.container_id)
    except NotFound:
        return api.RemoveContainerResponse()
    await remove_container_now(svc, ctr)
    return api.RemoveContainerResponse()


def to_list_item(ctr: state.CRIContainer) -> api.Container:
    """The ListContainers entry of a container."""
    item = api.Container(
        id=ctr.id,
        pod_sandbox_id=ctr.sandbox_id,
        metadata=ctr.config.metadata,
        image=api.ImageSpec(image=ctr.image_id, user_specified_image=ctr.config.image.image),
        image_ref=ctr.image_id,
        image_id=ctr.image_id,
        state=ctr.status.state,
        created_at=ctr.created_at,
        labels=dict(ctr.config.labels),
        annotations=dict(ctr.config.annotations),
    )
    return item


async def list_containers(svc: CRIService, request: api.ListContainersRequest) -> api.ListContainersResponse:
    """Containers matching the filter (ID prefix, state, pod, label selector)."""
    flt = request.filter if request.HasField("filter") else None
    items = []
    for ctr in sorted(svc.containers.values(), key=lambda c: c.created_at):
        if flt is not None:
            if flt.id and not ctr.id.startswith(flt.id):
                continue
            if flt.pod_sandbox_id and not ctr.sandbox_id.startswith(flt.pod_sandbox_id):
                continue
            if flt.HasField("state") and flt.state.state != ctr.status.state:
                continue
            if not state.matches_selector(ctr.config.labels, flt.label_selector):
                continue
        items.append(to_list_item(ctr))
    return api.ListContainersResponse(containers=items)


def container_status_message(ctr: state.CRIContainer) -> api.ContainerStatus:
    """The ContainerStatus message of a container."""
    st = ctr.status
    out = api.ContainerStatus(
        id=ctr.id,
        metadata=ctr.config.metadata,
        state=st.state,
        created_at=ctr.created_at,
        started_at=st.started_at,
        finished_at=st.finished_at,
        exit_code=st.exit_code,
        image=api.ImageSpec(image=ctr.config.image.image, user_specified_image=ctr.config.image.image),
        image_ref=ctr.image_ref,
        image_id=ctr.image_id,
        reason=st.reason,
        message=st.message,
        labels=dict(ctr.config.labels),
        annotations=dict(ctr.config.annotations),
        mounts=list(ctr.config.mounts),
        log_path=ctr.log_path,
    )
    if ctr.config.linux.HasField("resources"):
        out.resources.linux.CopyFrom(ctr.config.linux.resources)
    uid, gid, groups = ctr.user
    out.user.linux.uid = uid
    out.user.linux.gid = gid
    out.user.linux.supplemental_groups.extend(groups)
    return out


async def container_status(svc: CRIService, request: api.ContainerStatusRequest) -> api.ContainerStatusResponse:
    """A container's status; with ``verbose``, ``info["info"]`` holds its pid, spec and more."""
    ctr = svc.container(request.container_id)
    response = api.ContainerStatusResponse(status=container_status_message(ctr))
    if request.verbose:
        try:
            record = svc.metadata.containers.get(svc.ctx, ctr.id)
            spec = json.loads(record.spec.value) if record.spec is not None else {}
        except NotFound:
            spec = {}
        info = {
            "sandboxID": ctr.sandbox_id,
            "pid": ctr.status.pid,
            "removing": ctr.status.removing,
            "snapshotKey": ctr.id,
            "snapshotter": ctr.snapshotter,
            "runtimeType": svc.config.handler(svc.sandbox(ctr.sandbox_id).runtime_handler).runtime_type
            if ctr.sandbox_id in svc.sandboxes
            else "",
            "runtimeSpec": spec,
        }
        response.info["info"] = json.dumps(info)
    return response


async def update_container_resources(
    svc: CRIService, request: api.UpdateContainerResourcesRequest
) -> api.UpdateContainerResourcesResponse:
    """Change a container's cgroup limits (as NRI plugins leave them), in its spec and (when running) in its cgroup."""
    ctr = svc.container(request.container_id)
    if ctr.status.state not in (api.CONTAINER_CREATED, api.CONTAINER_RUNNING):
        raise FailedPrecondition(f"container {ctr.id} is not running or created")
    pod = svc.sandboxes.get(ctr.sandbox_id)
    resources = request.linux
    if pod is not None:
        resources = await svc.nri.update_container(pod, ctr, request.linux)
    await apply_resources(svc, ctr, resources)
    if pod is not None:
        await svc.nri.post_update_container(pod, ctr)
    return api.UpdateContainerResourcesResponse()


async def apply_resources(svc: CRIService, ctr: state.CRIContainer, linux: api.LinuxContainerResources) -> None:
    """Write new resources into a container's spec and, when it runs, its cgroup (NRI not consulted)."""
    async with svc.lock(ctr.id):
        if ctr.status.state not in (api.CONTAINER_CREATED, api.CONTAINER_RUNNING):
            raise FailedPrecondition(f"container {ctr.id} is not running or created")
        record = svc.metadata.containers.get(svc.ctx, ctr.id)
        old = json.loads(record.spec.value) if record.spec is not None else {}
        handler = svc.sandboxes[ctr.sandbox_id].runtime_handler if ctr.sandbox_id in svc.sandboxes else ""
        spec = updated_spec(svc, handler, old, linux)
        from dataclasses import replace

        svc.metadata.containers.update(
            svc.ctx, replace(record, spec=AnyValue(oci.SPEC_TYPE_URL, oci.encode(spec))), ["spec"]
        )
        ctr.config.linux.resources.CopyFrom(linux)
        if ctr.status.state == api.CONTAINER_RUNNING:
            resources = json.dumps(spec.get("linux", {}).get("resources", {})).encode()
            update = shim_pb2.UpdateTaskRequest(id=ctr.id)
            update.resources.CopyFrom(any_pb2.Any(type_url=RESOURCES_TYPE_URL, value=resources))
            try:
                await svc.tasks.call(svc.ctx, ctr.id, "Update", update, empty_pb2.Empty)
            except BaseException:
                svc.metadata.containers.update(svc.ctx, record, ["spec"])
                raise


async def reopen_container_log(
    svc: CRIService, request: api.ReopenContainerLogRequest
) -> api.ReopenContainerLogResponse:
    """Open the log path again (kubelet rotated the file)."""
    ctr = svc.container(request.container_id)
    if ctr.status.state != api.CONTAINER_RUNNING or ctr.io is None:
        raise FailedPrecondition("container is not running")
    await asyncio.to_thread(ctr.io.log.reopen)
    return api.ReopenContainerLogResponse()
