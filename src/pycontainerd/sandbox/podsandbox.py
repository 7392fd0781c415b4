"""The ``podsandbox`` controller: a pause container whose namespaces a pod's containers join.

Create builds the pause container (its own rootfs holding only the static pause binary, read
only; new pid, ipc, uts, mount and network namespaces, or the network namespace at
``netns_path``) as a container record named like the sandbox; Start runs it as a task through
the runtime v2 manager, so it is a task like any other: it survives a daemon restart and is
found again by the manager's restore. Containers join the sandbox by naming
``/proc/<pid>/ns/<kind>`` of the pause process in their spec. Stop ends the pause process;
Shutdown removes the task, the container record and the rootfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.errdefs import AlreadyExists, NotFound
from pycontainerd.images.platforms import Platform, host_platform
from pycontainerd.metadata.containers import pack_any
from pycontainerd.oci import spec as oci
from pycontainerd.pbtime import from_timestamp
from pycontainerd.sandbox.pause import pause_binary

if TYPE_CHECKING:
    from pathlib import Path

    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.namespaces import RequestContext
    from pycontainerd.runtime.v2.manager import TaskManager

log = logging.getLogger(__name__)

SANDBOXER = "podsandbox"
READY = "SANDBOX_READY"
NOT_READY = "SANDBOX_NOTREADY"
KIND_LABEL = "io.containerd.sandbox.kind"
STOP_GRACE = 10.0
NAMESPACES_SHARED = ("network", "ipc", "uts")
POD_ANNOTATION = "io.kubernetes.cri.sandbox-id"
"""Containers with this annotation share the sandbox's shim (when the shim groups by it)."""


@dataclass(frozen=True, slots=True)
class Status:
    """What Status reports."""

    sandbox_id: str
    pid: int
    state: str
    created_at: int
    exited_at: int = 0


@dataclass(frozen=True, slots=True)
class Exit:
    """How the pause process ended."""

    exit_status: int
    exited_at: int


class PodSandboxController:
    """Runs each sandbox as a pause container."""

    def __init__(self, metadata: Metadata, tasks: TaskManager, root: Path, runtime: str) -> None:
        self._metadata = metadata
        self._tasks = tasks
        self._root = root
        self._runtime = runtime
        self._created: dict[tuple[str, str], int] = {}

    def _dir(self, ctx: RequestContext, sandbox_id: str) -> Path:
        return self._root / "sandboxes" / ctx.namespace / sandbox_id

    async def create(
        self,
        ctx: RequestContext,
        sandbox_id: str,
        *,
        netns_path: str = "",
        hostname: str = "",
        pid_namespace: bool = True,
        spec: dict[str, Any] | None = None,
        snapshot: tuple[str, str] | None = None,
    ) -> None:
        """Make the pause container of a sandbox the store already holds.

        ``spec`` replaces the default pause spec (the CRI plugin builds one from the pod's
        config); its root is always the pause rootfs, and a mount point is made in that rootfs
        for each of its mounts (the rootfs is read-only once running). ``snapshot``
        (snapshotter, key) names a prepared snapshot of a pause image to use as the rootfs
        instead of the built-in pause program; the sandbox owns it from then on.
        """
        record = self._metadata.sandboxes.get(ctx, sandbox_id)
        directory = self._dir(ctx, sandbox_id)
        rootfs = directory / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        if snapshot is None:
            pause = await asyncio.to_thread(pause_binary, self._root)
            for mountpoint in ("proc", "dev", "sys"):  # the rootfs is read-only: runc cannot make them
                (rootfs / mountpoint).mkdir(exist_ok=True)
            await asyncio.to_thread(shutil.copy2, pause, rootfs / "pause")
        if spec is None:
            spec = oci.default_spec(ctx.namespace, sandbox_id, ["/pause"])
            spec["mounts"] = [m for m in spec["mounts"] if m["destination"] in ("/proc", "/dev", "/sys", "/dev/shm")]
            if netns_path:
                oci.with_namespace(spec, "network", netns_path)
            if not pid_namespace:
                oci.without_namespace(spec, "pid")
            oci.with_hostname(spec, hostname or sandbox_id[:63])
        oci.with_readonly_rootfs(spec)
        spec["root"]["path"] = "rootfs"
        spec["annotations"] = {**spec.get("annotations", {}), **self.annotations(sandbox_id)}
        if snapshot is None:
            await asyncio.to_thread(_mountpoints, rootfs, spec.get("mounts", []))
        runtime = record.runtime if record.runtime.name else Runtime(self._runtime)
        container = Container(
            id=sandbox_id,
            runtime=runtime,
            spec=AnyValue(oci.SPEC_TYPE_URL, oci.encode(spec)),
            sandbox=sandbox_id,
            labels={KIND_LABEL: SANDBOXER},
            snapshotter=snapshot[0] if snapshot else "",
            snapshot_key=snapshot[1] if snapshot else "",
        )
        try:
            self._metadata.containers.create(ctx, container)
        except AlreadyExists:
            raise AlreadyExists(f"sandbox {sandbox_id} already has its pause container") from None

    def annotations(self, sandbox_id: str) -> dict[str, str]:
        """Annotations of the pause container's spec."""
        return {POD_ANNOTATION: sandbox_id}

    async def start(self, ctx: RequestContext, sandbox_id: str) -> tuple[int, int]:
        """Start the pause process; returns (pid, created_at in ns)."""
        await self._create_task(ctx, sandbox_id)
        reply = await self._tasks.call(
            ctx, sandbox_id, "Start", shim_pb2.StartRequest(id=sandbox_id), shim_pb2.StartResponse
        )
        created = time.time_ns()
        self._created[(ctx.namespace, sandbox_id)] = created
        return int(reply.pid), created  # type: ignore[attr-defined]

    async def _create_task(self, ctx: RequestContext, sandbox_id: str, *, sandbox_api: bool = False) -> None:
        """Start the shim of the pause container (through the shim's Sandbox API if asked)."""
        container = self._metadata.containers.get(ctx, sandbox_id)
        rootfs = self._dir(ctx, sandbox_id) / "rootfs"
        mounts = [mount_pb2.Mount(type="bind", source=str(rootfs), options=["rbind", "ro"])]
        if container.snapshot_key:
            snapshotter = self._metadata.snapshotters[container.snapshotter]
            mounts = [
                mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
                for m in snapshotter.mounts(ctx, container.snapshot_key)
            ]
        await self._tasks.create(
            ctx,
            container,
            rootfs=mounts,
            stdin="",
            stdout="",
            stderr="",
            terminal=False,
            options=pack_any(container.runtime.options),
            sandbox_api=sandbox_api,
        )

    async def status(self, ctx: RequestContext, sandbox_id: str) -> Status:
        """Ready while the pause process runs."""
        self._metadata.sandboxes.get(ctx, sandbox_id)
        try:
            state = await self._tasks.call(
                ctx, sandbox_id, "State", shim_pb2.StateRequest(id=sandbox_id), shim_pb2.StateResponse
            )
        except NotFound:
            return Status(sandbox_id, 0, NOT_READY, self._created.get((ctx.namespace, sandbox_id), 0))
        running = state.status == 2  # type: ignore[attr-defined]  # containerd.v1.types.Status RUNNING
        exited = from_timestamp(state.exited_at) if state.HasField("exited_at") else 0  # type: ignore[attr-defined]
        return Status(
            sandbox_id,
            int(state.pid),  # type: ignore[attr-defined]
            READY if running else NOT_READY,
            self._created.get((ctx.namespace, sandbox_id), 0),
            exited if not running else 0,
        )

    async def wait(self, ctx: RequestContext, sandbox_id: str) -> Exit:
        """Until the pause process exits."""
        reply = await self._tasks.wait(ctx, sandbox_id)
        return Exit(reply.exit_status, from_timestamp(reply.exited_at))

    async def stop(self, ctx: RequestContext, sandbox_id: str, grace: float = 0) -> None:
        """End the pause process: SIGTERM, then SIGKILL after ``grace`` seconds (default 10)."""
        try:
            await self._kill(ctx, sandbox_id, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._tasks.wait(ctx, sandbox_id), grace or STOP_GRACE)
            except TimeoutError:
                await self._kill(ctx, sandbox_id, signal.SIGKILL)
                await self._tasks.wait(ctx, sandbox_id)
        except NotFound:
            pass  # no task: stopped already

    async def _kill(self, ctx: RequestContext, sandbox_id: str, sig: int) -> None:
        request = shim_pb2.KillRequest(id=sandbox_id, signal=sig, all=True)
        with contextlib.suppress(NotFound):
            await self._tasks.call(ctx, sandbox_id, "Kill", request, empty_pb2.Empty)

    async def shutdown(self, ctx: RequestContext, sandbox_id: str) -> None:
        """Remove everything the sandbox had: its task, its container record, its rootfs."""
        await self.stop(ctx, sandbox_id, grace=1)
        with contextlib.suppress(NotFound):
            await self._tasks.delete(ctx, sandbox_id)
        container = None
        with contextlib.suppress(NotFound):
            container = self._metadata.containers.get(ctx, sandbox_id)
            self._metadata.containers.delete(ctx, sandbox_id)
        if container is not None and container.snapshot_key:
            snapshotter = self._metadata.snapshotters.get(container.snapshotter)
            if snapshotter is not None:
                with contextlib.suppress(NotFound):
                    snapshotter.remove(ctx, container.snapshot_key)
        await asyncio.to_thread(shutil.rmtree, self._dir(ctx, sandbox_id), True)
        self._created.pop((ctx.namespace, sandbox_id), None)

    def platform(self) -> Platform:
        """The platform the sandbox runs (this host's)."""
        return host_platform()

    async def metrics(self, ctx: RequestContext, sandbox_id: str) -> shim_pb2.StatsResponse:
        """The pause container's cgroup metrics, from its shim."""
        reply = await self._tasks.call(
            ctx, sandbox_id, "Stats", shim_pb2.StatsRequest(id=sandbox_id), shim_pb2.StatsResponse
        )
        assert isinstance(reply, shim_pb2.StatsResponse)
        return reply

    def shared_namespaces(self, pid: int) -> dict[str, str]:
        """The namespace paths a pod container joins (network, ipc, uts of the pause process)."""
        return {kind: f"/proc/{pid}/ns/{'net' if kind == 'network' else kind}" for kind in NAMESPACES_SHARED}


def _mountpoints(rootfs: Path, mounts: list[dict[str, Any]]) -> None:
    """Make each mount's destination in the (soon read-only) rootfs: a file for a bind mount of
    a file, a directory otherwise."""
    for m in mounts:
        dest = rootfs / str(m.get("destination", "")).lstrip("/")
        if dest == rootfs or ".." in dest.parts:
            continue
        source = str(m.get("source", ""))
        is_file = m.get("type") == "bind" and os.path.isfile(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if is_file:
            dest.touch(exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
