"""The CRI plugin's state and what every RPC shares: stores, lookups, events, recovery.

:class:`CRIService` owns the pods and containers in memory (see :mod:`.state` for how they are
persisted), the name indexes, the container-event subscribers and the background monitors that
turn a task exit into a status change. The RPCs themselves live in the modules named in the
package docstring and take the service as their first argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.core.containers import AnyValue
from pycontainerd.cri import state
from pycontainerd.cri.config import K8S_NAMESPACE, CRIConfig
from pycontainerd.cri.io import ContainerIO
from pycontainerd.cri.nri import NRIBridge
from pycontainerd.errdefs import NotFound
from pycontainerd.namespaces import RequestContext

if TYPE_CHECKING:
    from pathlib import Path

    from pycontainerd.metadata.plugin import Metadata
    from pycontainerd.runtime.v2.manager import TaskManager
    from pycontainerd.transfer.local import LocalTransfer

log = logging.getLogger(__name__)

EVENT_QUEUE = 1024


class CRIService:
    """Everything the CRI RPCs need, and the pods and containers they act on."""

    def __init__(
        self,
        config: CRIConfig,
        *,
        metadata: Metadata,
        tasks: TaskManager,
        controllers: dict[str, Any],
        transfer: LocalTransfer | None,
        root: Path,
        state_dir: Path,
        network: Any = None,
        streaming: Any = None,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.tasks = tasks
        self.controllers = controllers
        self.transfer = transfer
        self.root = root
        self.state_dir = state_dir
        self.network = network
        self.streaming = streaming
        self.ctx = RequestContext(K8S_NAMESPACE)
        self.sandboxes: dict[str, state.PodSandbox] = {}
        self.containers: dict[str, state.CRIContainer] = {}
        self.sandbox_names = state.NameIndex("sandbox")
        self.container_names = state.NameIndex("container")
        self.status_files = state.StatusFiles(root)
        self._subscribers: set[asyncio.Queue[api.ContainerEventResponse]] = set()
        self.locks: dict[str, asyncio.Lock] = {}
        self.spec_options: dict[str, Any] = {}  # runtime handler -> cri.spec.SpecOptions (host probed once)
        self.fs_usage: tuple[float, Any] | None = None  # (when, ImageFsInfoResponse), see cri.images
        self.nri = NRIBridge(self, None)  # replaced by the plugin when the daemon has NRI

    # -- lookups ---------------------------------------------------------------------------

    def sandbox(self, sandbox_id: str) -> state.PodSandbox:
        """A pod by ID or unique prefix; NotFound otherwise."""
        found: state.PodSandbox = state.find(self.sandboxes, "sandbox", sandbox_id)
        return found

    def container(self, container_id: str) -> state.CRIContainer:
        """A container by ID or unique prefix; NotFound otherwise."""
        found: state.CRIContainer = state.find(self.containers, "container", container_id)
        return found

    def lock(self, key: str) -> asyncio.Lock:
        """The lock serializing state changes of one pod or container."""
        return self.locks.setdefault(key, asyncio.Lock())

    def controller(self, sandboxer: str) -> Any:
        """The sandbox controller ``sandboxer`` (podsandbox or shim)."""
        found = self.controllers.get(sandboxer or "podsandbox")
        if found is None:
            raise NotFound(f"sandbox controller {sandboxer!r} is not loaded")
        return found

    def io_dir(self, container_id: str) -> Path:
        """Where a container's (and its execs') FIFOs live."""
        return self.state_dir / "io" / container_id

    def container_io(self, ctr: state.CRIContainer) -> ContainerIO:
        """The (not yet opened) stdio of a container: its FIFOs, its CRI log."""
        return ContainerIO(
            self.io_dir(ctr.id),
            stdin=ctr.config.stdin,
            tty=ctr.config.tty,
            log_path=ctr.log_path,
            max_line=self.config.max_container_log_line_size,
        )

    def sandbox_dir(self, sandbox_id: str) -> Path:
        """The pod's files: hostname, hosts, resolv.conf, shm."""
        return self.state_dir / "sandboxes" / sandbox_id

    # -- persistence -------------------------------------------------------------------------

    def save_sandbox(self, pod: state.PodSandbox) -> None:
        """Store the pod's metadata in its sandbox record."""
        record = self.metadata.sandboxes.get(self.ctx, pod.id)
        extensions = dict(record.extensions)
        extensions[state.SANDBOX_EXTENSION] = AnyValue(state.METADATA_TYPE_URL, pod.to_json())
        self.metadata.sandboxes.update(self.ctx, replace(record, extensions=extensions), ["extensions"])

    def save_status(self, ctr: state.CRIContainer) -> None:
        """Persist a container's status."""
        self.status_files.save(ctr.id, ctr.status)

    # -- events ------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[api.ContainerEventResponse]:
        """A queue receiving every container event from now on."""
        queue: asyncio.Queue[api.ContainerEventResponse] = asyncio.Queue(EVENT_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[api.ContainerEventResponse]) -> None:
        """Stop delivering to ``queue``."""
        self._subscribers.discard(queue)

    def emit(
        self, container_id: str, kind: api.ContainerEventType, pod_status: api.PodSandboxStatus | None = None
    ) -> None:
        """Send a container event (CREATED, STARTED, STOPPED, DELETED) to every subscriber."""
        if not self._subscribers:
            return
        event = api.ContainerEventResponse(
            container_id=container_id, container_event_type=kind, created_at=time.time_ns()
        )
        if pod_status is not None:
            event.pod_sandbox_status.CopyFrom(pod_status)
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    # -- task exits --------------------------------------------------------------------------

    def monitor_container(self, ctr: state.CRIContainer) -> None:
        """Wait for the container's task in the background and record its exit."""

        async def watch() -> None:
            try:
                reply = await self.tasks.wait(self.ctx, ctr.id)
                exit_code, exited_at = int(reply.exit_status), _ns(reply.exited_at)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("wait for container %s", ctr.id, exc_info=True)
                exit_code, exited_at = 255, time.time_ns()
            await self.container_exited(ctr, exit_code, exited_at or time.time_ns())

        ctr.monitor = spawn(watch(), name=f"cri-monitor-{ctr.id[:12]}")

    async def container_exited(self, ctr: state.CRIContainer, exit_code: int, exited_at: int) -> None:
        """Record an exit: EXITED state, exit code, reason; then drain and close its IO."""
        if ctr.status.state == api.CONTAINER_EXITED:
            return
        ctr.status.state = api.CONTAINER_EXITED
        ctr.status.exit_code = exit_code
        ctr.status.finished_at = exited_at
        ctr.status.pid = 0
        if not ctr.status.reason:
            ctr.status.reason = "Completed" if exit_code == 0 else "Error"
        self.save_status(ctr)
        if ctr.io is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctr.io.wait_closed(), 2.0)
            ctr.io.close()
        with contextlib.suppress(Exception):
            await self.tasks.delete(self.ctx, ctr.id)
        await self.nri.stop_container(ctr)
        self.emit(ctr.id, api.CONTAINER_STOPPED_EVENT)

    def monitor_sandbox(self, pod: state.PodSandbox) -> None:
        """Wait for the pod's sandbox (pause process) in the background; mark it NOTREADY when it ends."""

        async def watch() -> None:
            try:
                await self.controller(pod.sandboxer).wait(self.ctx, pod.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("wait for sandbox %s", pod.id, exc_info=True)
            pod.state = api.SANDBOX_NOTREADY
            pod.pid = 0
            self.emit(pod.id, api.CONTAINER_STOPPED_EVENT)

        pod.monitor = spawn(watch(), name=f"cri-sandbox-monitor-{pod.id[:12]}")

    # -- recovery ----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild pods and containers from the stores after a daemon (re)start."""
        for record in self.metadata.sandboxes.list(self.ctx):
            ext = record.extensions.get(state.SANDBOX_EXTENSION)
            if ext is None:
                continue
            try:
                pod = state.PodSandbox.from_json(ext.value)
            except (ValueError, KeyError):
                log.warning("sandbox %s: unreadable CRI metadata", record.id)
                continue
            try:
                st = await self.controller(pod.sandboxer).status(self.ctx, pod.id)
                pod.pid = st.pid
                pod.state = api.SANDBOX_READY if st.state == "SANDBOX_READY" else api.SANDBOX_NOTREADY
            except Exception:
                pod.state = api.SANDBOX_NOTREADY
            self.sandboxes[pod.id] = pod
            self.sandbox_names.reserve(pod.name, pod.id)
            if pod.state == api.SANDBOX_READY:
                self.monitor_sandbox(pod)
        await self._drop_orphan_netns()
        for ctr_record in self.metadata.containers.list(self.ctx, [f"labels.{state.KIND_LABEL}==container"]):
            ext = ctr_record.extensions.get(state.CONTAINER_EXTENSION)
            if ext is None:
                continue
            try:
                ctr = state.CRIContainer.from_json(ext.value)
            except (ValueError, KeyError):
                log.warning("container %s: unreadable CRI metadata", ctr_record.id)
                continue
            ctr.status = self.status_files.load(ctr.id)
            await self._recover_task(ctr)
            self.containers[ctr.id] = ctr
            self.container_names.reserve(ctr.name, ctr.id)

    async def _drop_orphan_netns(self) -> None:
        """Network namespaces under our state dir that no pod holds (a crash mid-RunPodSandbox)."""
        if self.network is None or not self.config.netns_mounts_under_state_dir:
            return
        from pycontainerd.cni import list_netns

        held = {pod.netns_path for pod in self.sandboxes.values()}
        for entry in await asyncio.to_thread(list_netns, self.network.netns_dir):
            if str(entry.path) not in held:
                log.info("removing orphaned network namespace %s", entry.path)
                await self.network.remove_netns(str(entry.path))

    async def _recover_task(self, ctr: state.CRIContainer) -> None:
        try:
            self.tasks.get(self.ctx, ctr.id)
        except NotFound:
            if ctr.status.state in (api.CONTAINER_RUNNING, api.CONTAINER_CREATED) and ctr.status.started_at:
                # Running when we went away, and its shim is gone: the exit is unknown.
                ctr.status.state = api.CONTAINER_EXITED
                ctr.status.exit_code = 255
                ctr.status.reason = "Unknown"
                ctr.status.finished_at = ctr.status.finished_at or time.time_ns()
                self.save_status(ctr)
            elif ctr.status.state == api.CONTAINER_CREATED:
                ctr.status.state = api.CONTAINER_UNKNOWN if ctr.status.unknown else api.CONTAINER_CREATED
            return
        if ctr.status.state in (api.CONTAINER_RUNNING, api.CONTAINER_CREATED) and ctr.status.started_at:
            ctr.io = self.container_io(ctr)
            try:
                ctr.io.open(hold=False)
            except OSError:
                log.warning("container %s: cannot reopen its IO", ctr.id, exc_info=True)
                ctr.io = None
            self.monitor_container(ctr)

    async def close(self) -> None:
        """Stop monitors and close IO (containers keep running: the shims own them)."""
        monitors = [c.monitor for c in self.containers.values()] + [p.monitor for p in self.sandboxes.values()]
        for monitor in monitors:
            if monitor is not None:
                monitor.cancel()
        for ctr in self.containers.values():
            if ctr.io is not None:
                ctr.io.close()
        await self.nri.close()
        if self.streaming is not None:
            with contextlib.suppress(Exception):
                await self.streaming.stop()


def _ns(ts: Any) -> int:
    """A protobuf Timestamp in nanoseconds (0 when unset)."""
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos) if ts is not None else 0
