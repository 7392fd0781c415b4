"""Pod RPCs: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.

A pod is run as containerd 2.x runs it: a sandbox record, a network namespace set up by CNI
(unless the pod uses the host's network), the pod's files (hostname, hosts, resolv.conf, a
``/dev/shm`` tmpfs), then the sandbox controller named by the runtime handler (``podsandbox``:
a pause container) is asked to Create and Start it. Every step is undone if a later one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.core.containers import AnyValue
from pycontainerd.core.sandboxes import Sandbox
from pycontainerd.cri import state, userns
from pycontainerd.cri.spec import hostname_file, hosts_file, resolv_conf
from pycontainerd.cri.specs import build_sandbox_spec
from pycontainerd.errdefs import InvalidArgument, NotFound
from pycontainerd.namespaces import RequestContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pycontainerd.cri.service import CRIService

log = logging.getLogger(__name__)

SHM_SIZE = 64 * 1024 * 1024
HOST_HOSTS = "/etc/hosts"
HOST_RESOLV = "/etc/resolv.conf"


def host_network(config: api.PodSandboxConfig) -> bool:
    """Whether the pod shares the node's network namespace."""
    return config.linux.security_context.namespace_options.network == api.NODE


def host_ipc(config: api.PodSandboxConfig) -> bool:
    """Whether the pod shares the node's IPC namespace."""
    return config.linux.security_context.namespace_options.ipc == api.NODE


async def run_pod_sandbox(svc: CRIService, request: api.RunPodSandboxRequest) -> api.RunPodSandboxResponse:
    """Create and start a pod; its ID in the response."""
    config = request.config
    if not config.HasField("metadata"):
        raise InvalidArgument("sandbox config must include metadata")
    meta = config.metadata
    if not meta.name or not meta.namespace or not meta.uid:
        raise InvalidArgument("sandbox metadata must include name, namespace and uid")
    try:
        handler = svc.config.handler(request.runtime_handler)
    except KeyError:
        raise NotFound(f"no runtime for {request.runtime_handler!r} is configured") from None
    sandbox_id = secrets.token_hex(32)
    name = state.sandbox_name(meta)
    svc.sandbox_names.reserve(name, sandbox_id)
    pod = state.PodSandbox(
        id=sandbox_id,
        name=name,
        config=config,
        runtime_handler=request.runtime_handler,
        sandboxer=handler.sandboxer,
        created_at=time.time_ns(),
    )
    undo: list[Any] = []
    try:
        record = Sandbox(
            id=sandbox_id,
            runtime=handler.runtime(),
            sandboxer=handler.sandboxer,
            labels={"name": name},
            extensions={state.SANDBOX_EXTENSION: AnyValue(state.METADATA_TYPE_URL, pod.to_json())},
        )
        svc.metadata.sandboxes.create(svc.ctx, record)
        undo.append(lambda: svc.metadata.sandboxes.delete(svc.ctx, sandbox_id))
        if not host_network(config):
            pod.netns_path = await svc.network.create_netns(userns.pod_idmap(config))
            undo.append(lambda: svc.network.remove_netns(pod.netns_path))
            svc.save_sandbox(pod)
            undo.append(lambda: svc.network.teardown(pod))
            pod.ip, pod.additional_ips = await svc.network.setup(pod)
            svc.save_sandbox(pod)
        files = await asyncio.to_thread(_make_sandbox_files, svc.sandbox_dir(sandbox_id), config)
        undo.append(lambda: asyncio.to_thread(remove_sandbox_files, svc.sandbox_dir(sandbox_id)))
        controller = svc.controller(pod.sandboxer)
        async with _pause_rootfs(svc, sandbox_id, config) as (leased, snapshot, pause_args):
            spec = build_sandbox_spec(svc, pod, files, pause_args)
            await controller.create(leased, sandbox_id, netns_path=pod.netns_path, spec=spec, snapshot=snapshot)
        undo.append(lambda: controller.shutdown(svc.ctx, sandbox_id))
        pod.pid, _ = await controller.start(svc.ctx, sandbox_id)
        await svc.nri.run_pod_sandbox(pod)
        pod.state = api.SANDBOX_READY
    except BaseException:
        for step in reversed(undo):
            try:
                result = step()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception:
                log.warning("sandbox %s: rollback step failed", sandbox_id, exc_info=True)
        svc.sandbox_names.release(name)
        raise
    svc.sandboxes[sandbox_id] = pod
    svc.monitor_sandbox(pod)
    svc.emit(sandbox_id, api.CONTAINER_CREATED_EVENT)
    svc.emit(sandbox_id, api.CONTAINER_STARTED_EVENT)
    return api.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)


@contextlib.asynccontextmanager
async def _pause_rootfs(
    svc: CRIService, sandbox_id: str, pod_config: api.PodSandboxConfig
) -> AsyncIterator[tuple[RequestContext, tuple[str, str] | None, list[str]]]:
    """The pause rootfs: the built-in pause program, or a snapshot of ``sandbox_image`` (pulled
    when absent), prepared under a temporary lease until the pause container record holds it."""
    if not svc.config.sandbox_image:
        yield svc.ctx, None, ["/pause"]
        return
    from pycontainerd.cri.images import ImageIndex, pull_image

    ref = svc.config.sandbox_image
    if not ImageIndex(svc).lookup(ref):
        await pull_image(svc, api.PullImageRequest(image=api.ImageSpec(image=ref)))
    image = ImageIndex(svc).get(ref)
    config = image.config.get("config") or {}
    args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])] or ["/pause"]
    name = svc.config.containerd.snapshotter
    snapshotter = svc.metadata.snapshotters[name]
    lease_id = f"cri-sandbox-{sandbox_id[:16]}"
    svc.metadata.leases.create(svc.ctx, lease_id, {})
    leased = RequestContext(svc.ctx.namespace, lease_id)
    try:
        from pycontainerd.cri.containers import ensure_unpacked

        await ensure_unpacked(svc, leased, image.name, image.chain_id, name)
        parent, labels = await userns.snapshot_parent(svc, leased, name, image.chain_id, pod_config)
        snapshotter.prepare(leased, sandbox_id, parent, labels)
        try:
            yield leased, (name, sandbox_id), args
        except BaseException:
            with contextlib.suppress(NotFound):
                snapshotter.remove(svc.ctx, sandbox_id)
            raise
    finally:
        with contextlib.suppress(NotFound):
            svc.metadata.leases.delete(svc.ctx, lease_id)


def _make_sandbox_files(directory: Path, config: api.PodSandboxConfig) -> dict[str, str]:
    """hostname, hosts, resolv.conf and (without host IPC) a tmpfs for /dev/shm."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o711)
    files: dict[str, str] = {}
    (directory / "hostname").write_text(hostname_file(config, socket.gethostname()))
    files["hostname"] = str(directory / "hostname")
    hosts = directory / "hosts"
    try:
        node_hosts: str | None = Path(HOST_HOSTS).read_text()
    except OSError:
        node_hosts = None
    hosts.write_text(hosts_file(node_hosts))
    files["hosts"] = str(hosts)
    resolv = directory / "resolv.conf"
    if config.HasField("dns_config") and (
        config.dns_config.servers or config.dns_config.searches or config.dns_config.options
    ):
        resolv.write_text(resolv_conf(config.dns_config))
    else:
        try:
            shutil.copyfile(HOST_RESOLV, resolv)
        except OSError:
            resolv.write_text("")
    files["resolv_conf"] = str(resolv)
    if not host_ipc(config):
        shm = directory / "shm"
        shm.mkdir(exist_ok=True)
        if not os.path.ismount(shm):
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"nodev,noexec,nosuid,mode=1777,size={SHM_SIZE}", "shm", str(shm)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        files["shm"] = str(shm)
    return files


def remove_sandbox_files(directory: Path) -> None:
    """Unmount the pod's shm and delete its files."""
    _unmount_shm(directory)
    shutil.rmtree(directory, ignore_errors=True)


async def stop_pod_sandbox(svc: CRIService, request: api.StopPodSandboxRequest) -> api.StopPodSandboxResponse:
    """Stop every container of the pod, the sandbox, and tear its network down (idempotent)."""
    pod = svc.sandbox(request.pod_sandbox_id)
    await stop_pod(svc, pod)
    return api.StopPodSandboxResponse()


async def stop_pod(svc: CRIService, pod: state.PodSandbox) -> None:
    """The work of StopPodSandbox."""
    from pycontainerd.cri.containers import stop_container_now

    async with svc.lock(pod.id):
        members = [c for c in svc.containers.values() if c.sandbox_id == pod.id]
        await asyncio.gather(*(stop_container_now(svc, c, 0) for c in members))
        if pod.state == api.SANDBOX_READY:
            await svc.controller(pod.sandboxer).stop(svc.ctx, pod.id, 0)
            pod.state = api.SANDBOX_NOTREADY
            pod.pid = 0
        await svc.nri.stop_pod_sandbox(pod)
        if pod.netns_path:
            await svc.network.teardown(pod)
            await svc.network.remove_netns(pod.netns_path)
            pod.netns_path = ""
            with contextlib.suppress(NotFound):
                svc.save_sandbox(pod)
        await asyncio.to_thread(_unmount_shm, svc.sandbox_dir(pod.id))


def _unmount_shm(directory: Path) -> None:
    """Unmount the pod's /dev/shm tmpfs (stopped pods keep no tmpfs)."""
    shm = directory / "shm"
    if os.path.ismount(shm):
        subprocess.run(["umount", "-l", str(shm)], check=False, capture_output=True, timeout=30)


async def remove_pod_sandbox(svc: CRIService, request: api.RemovePodSandboxRequest) -> api.RemovePodSandboxResponse:
    """Remove a pod and its containers (stopping them first); a pod already gone is not an error."""
    try:
        pod = svc.sandbox(request.pod_sandbox_id)
    except NotFound:
        return api.RemovePodSandboxResponse()
    from pycontainerd.cri.containers import remove_container_now

    members = [c for c in svc.containers.values() if c.sandbox_id == pod.id]
    if (
        pod.state == api.SANDBOX_READY
        or pod.netns_path
        or any(c.status.state == api.CONTAINER_RUNNING for c in members)
    ):
        await stop_pod(svc, pod)  # not again for a stopped pod: NRI plugins saw it stop once
    for ctr in [c for c in svc.containers.values() if c.sandbox_id == pod.id]:
        await remove_container_now(svc, ctr)
    async with svc.lock(pod.id):
        if pod.monitor is not None:
            pod.monitor.cancel()
        with contextlib.suppress(NotFound):
            await svc.controller(pod.sandboxer).shutdown(svc.ctx, pod.id)
        await asyncio.to_thread(remove_sandbox_files, svc.sandbox_dir(pod.id))
        await svc.nri.remove_pod_sandbox(pod)
        with contextlib.suppress(NotFound):
            svc.metadata.sandboxes.delete(svc.ctx, pod.id)
        svc.sandboxes.pop(pod.id, None)
        svc.sandbox_names.release(pod.name)
    svc.locks.pop(pod.id, None)
    svc.emit(pod.id, api.CONTAINER_DELETED_EVENT)
    return api.RemovePodSandboxResponse()


def _pod_fields(pod: state.PodSandbox) -> dict[str, Any]:
    """What PodSandbox (list entries) and PodSandboxStatus share."""
    return {
        "id": pod.id,
        "metadata": pod.config.metadata,
        "state": pod.state,
        "created_at": pod.created_at,
        "labels": dict(pod.config.labels),
        "annotations": dict(pod.config.annotations),
        "runtime_handler": pod.runtime_handler,
    }


def pod_status(pod: state.PodSandbox) -> api.PodSandboxStatus:
    """The PodSandboxStatus message of a pod."""
    status = api.PodSandboxStatus(**_pod_fields(pod))
    if pod.ip:
        status.network.ip = pod.ip
        status.network.additional_ips.extend(api.PodIP(ip=ip) for ip in pod.additional_ips)
    opts = pod.config.linux.security_context.namespace_options
    status.linux.namespaces.options.network = opts.network
    status.linux.namespaces.options.pid = opts.pid
    status.linux.namespaces.options.ipc = opts.ipc
    if opts.HasField("userns_options"):
        status.linux.namespaces.options.userns_options.CopyFrom(opts.userns_options)
    return status


async def pod_sandbox_status(svc: CRIService, request: api.PodSandboxStatusRequest) -> api.PodSandboxStatusResponse:
    """A pod's status; with ``verbose``, ``info["info"]`` holds containerd-style JSON details."""
    pod = svc.sandbox(request.pod_sandbox_id)
    response = api.PodSandboxStatusResponse(status=pod_status(pod), timestamp=time.time_ns())
    if request.verbose:
        info = {
            "pid": pod.pid,
            "processStatus": "running" if pod.state == api.SANDBOX_READY else "stopped",
            "netNamespaceClosed": not pod.netns_path,
            "netns": pod.netns_path,
            "runtimeHandler": pod.runtime_handler,
            "runtimeType": svc.config.handler(pod.runtime_handler).runtime_type,
            "sandboxer": pod.sandboxer,
            "config": json.loads(_to_json(pod.config)),
        }
        response.info["info"] = json.dumps(info)
    return response


def _to_json(message: Any) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(message, preserving_proto_field_name=True)


async def list_pod_sandbox(svc: CRIService, request: api.ListPodSandboxRequest) -> api.ListPodSandboxResponse:
    """Pods matching the filter (ID prefix, state, label selector)."""
    flt = request.filter if request.HasField("filter") else None
    items = []
    for pod in sorted(svc.sandboxes.values(), key=lambda p: p.created_at):
        if flt is not None:
            if flt.id and not pod.id.startswith(flt.id):
                continue
            if flt.HasField("state") and flt.state.state != pod.state:
                continue
            if not state.matches_selector(pod.config.labels, flt.label_selector):
                continue
        items.append(api.PodSandbox(**_pod_fields(pod)))
    return api.ListPodSandboxResponse(items=items)
