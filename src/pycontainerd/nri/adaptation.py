"""The runtime adaptation: plugins in, pod and container events out (containerd's ``nri.Adaptation``).

The CRI plugin owns one :class:`Adaptation`. At :meth:`~Adaptation.start` it launches the
pre-installed plugins, synchronizes them with the runtime's state (from the registered
state provider) and listens for external plugins. Each CRI operation then calls the
matching hook; plugins are consulted one by one in ``(index, name)`` order, under one lock,
so they see operations in the order the runtime performs them.

A plugin that times out or loses its connection is dropped and the operation continues
without it; a plugin that answers with an error fails the operation (as in containerd).
Plugin-requested updates and evictions are returned to the caller, except unsolicited ones
(``UpdateContainers``), which go to the registered update callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from pycontainerd.aio import spawn
from pycontainerd.version import VERSION

from .api import Event, pb
from .connection import PluginConnection, UpdateCallback, validate_adjustment
from .errors import NRIError
from .launch import LaunchedProcess, PluginFile, discover
from .result import CreateContainerResult, CreateResult, UpdateContainerResult
from .updates import UpdateResult

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from .config import NRIConfig

log = logging.getLogger(__name__)

StateProvider = Callable[[], Awaitable[tuple[Sequence[pb.PodSandbox], Sequence[pb.Container]]]]
"""Returns the runtime's current pods and containers, for synchronizing a new plugin."""


class Adaptation:
    """NRI, runtime side.

    Args:
        config: The ``[plugins."io.containerd.nri.v1.nri"]`` settings.
        runtime_name: Announced to plugins in Configure.
        runtime_version: Announced to plugins in Configure.
        state_provider: Lists current pods and containers (see :meth:`set_state_provider`).
        update_callback: Applies unsolicited updates (see :meth:`set_update_callback`).
    """

    def __init__(
        self,
        config: NRIConfig,
        *,
        runtime_name: str = "pycontainerd",
        runtime_version: str = VERSION,
        state_provider: StateProvider | None = None,
        update_callback: UpdateCallback | None = None,
    ) -> None:
        self.config = config
        self.runtime_name = runtime_name
        self.runtime_version = runtime_version
        self._state_provider = state_provider
        self._update_callback = update_callback
        self._plugins: list[PluginConnection] = []
        self._lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._stopping: set[asyncio.Task[None]] = set()  # dropped plugins being terminated
        self._ctr_state: dict[str, str] = {}
        self._started = False

    @property
    def enabled(self) -> bool:
        """False when the configuration disables NRI: every hook is then a no-op."""
        return not self.config.disable

    @property
    def plugins(self) -> list[str]:
        """The active plugins' ``<index>-<name>``, in invocation order."""
        return [p.name for p in self._plugins if not p.closed]

    def set_state_provider(self, provider: StateProvider) -> None:
        """Register the function that lists the runtime's pods and containers."""
        self._state_provider = provider

    def set_update_callback(self, callback: UpdateCallback) -> None:
        """Register the function that applies plugin-initiated updates and evictions."""
        self._update_callback = callback

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the installed plugins, synchronize them, and listen for external ones.

        Raises:
            NRIError: If plugin discovery or the listening socket fails.
        """
        if not self.enabled or self._started:
            return
        self._started = True
        files = discover(self.config.plugin_path, self.config.plugin_config_path)
        launched = await asyncio.gather(*(self._launch(f) for f in files))
        async with self._lock:
            pods, containers = await self._current_state()
            for plugin in launched:
                if plugin is None:
                    continue
                try:
                    updates = await plugin.synchronize(pods, containers)
                except NRIError as exc:
                    log.warning("nri: failed to synchronize pre-installed plugin %s: %s", plugin.name, exc)
                    await plugin.stop()
                    continue
                self._add(plugin)
                await self._apply_updates(updates, [])
        if not self.config.disable_connections:
            await self._listen()

    async def stop(self) -> None:
        """Stop listening, tell every plugin we are going away, and stop them."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(OSError):
                os.unlink(self.config.socket_path)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(self._pending)
        if self._stopping:
            await asyncio.wait(self._stopping)  # bounded: terminate() SIGKILLs after its grace
        plugins, self._plugins = self._plugins, []
        await asyncio.gather(*(p.shutdown() for p in plugins))
        await asyncio.gather(*(p.stop() for p in plugins))
        self._started = False

    async def _launch(self, plugin_file: PluginFile) -> PluginConnection | None:
        try:
            process, local = LaunchedProcess.spawn_connected(plugin_file)
        except OSError as exc:
            log.warning("nri: failed to launch plugin %s-%s: %s", plugin_file.index, plugin_file.name, exc)
            return None
        plugin = self._new_connection(plugin_file.index, plugin_file.name, plugin_file.config, process)
        await plugin.connect(*await asyncio.open_unix_connection(sock=local))
        try:
            await plugin.start(self.runtime_name, self.runtime_version)
        except NRIError as exc:
            log.warning("nri: failed to start pre-installed plugin %s: %s", plugin.name, exc)
            await plugin.stop()
            return None
        return plugin

    def _new_connection(
        self, index: str = "", name: str = "", config: str = "", process: LaunchedProcess | None = None
    ) -> PluginConnection:
        return PluginConnection(
            index=index,
            name=name,
            config=config,
            process=process,
            registration_timeout=self.config.registration_timeout,
            request_timeout=self.config.request_timeout,
            on_update=self._apply_updates,
        )

    async def _listen(self) -> None:
        path = self.config.socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._accept, path=path)
        except OSError as exc:
            raise NRIError(f"failed to create socket {path!r}: {exc}") from exc

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        try:
            plugin = self._new_connection()
            await plugin.connect(reader, writer)
            try:
                await plugin.start(self.runtime_name, self.runtime_version)
            except NRIError as exc:
                log.error("nri: failed to start external plugin: %s", exc)
                return
            async with self._lock:
                pods, containers = await self._current_state()
                try:
                    updates = await plugin.synchronize(pods, containers)
                except NRIError as exc:
                    log.error("nri: failed to synchronize plugin %s: %s", plugin.name, exc)
                    await plugin.close()
                    return
                self._add(plugin)
                log.info("nri: plugin %s connected and synchronized", plugin.name)
                await self._apply_updates(updates, [])
        finally:
            if task is not None:
                self._pending.discard(task)

    def _add(self, plugin: PluginConnection) -> None:
        self._plugins = sorted([*self._plugins, plugin], key=lambda p: p.sort_key)
        log.info("nri: plugin invocation order: %s", ", ".join(p.name for p in self._plugins))

    def _drop_closed(self) -> None:
        closed = [p for p in self._plugins if p.closed]
        if closed:
            self._plugins = [p for p in self._plugins if not p.closed]
            for plugin in closed:
                log.warning("nri: dropped plugin %s (%s)", plugin.name, plugin.close_reason or "closed")
                task = spawn(plugin.stop(), name=f"nri stop {plugin.name}")
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    async def _current_state(self) -> tuple[list[pb.PodSandbox], list[pb.Container]]:
        if self._state_provider is None:
            return [], []
        pods, containers = await self._state_provider()
        for ctr in containers:
            self._ctr_state[ctr.id] = {
                pb.CONTAINER_CREATED: "created",
                pb.CONTAINER_RUNNING: "running",
                pb.CONTAINER_PAUSED: "running",
                pb.CONTAINER_STOPPED: "stopped",
            }.get(ctr.state, "removed")
        return list(pods), list(containers)

    async def _apply_updates(
        self, updates: list[pb.ContainerUpdate], evictions: list[pb.ContainerEviction]
    ) -> Sequence[pb.ContainerUpdate]:
        if not updates and not evictions:
            return []
        if self._update_callback is None:
            log.warning("nri: no update callback registered; %d update(s) not applied", len(updates))
            return updates
        try:
            return await self._update_callback(updates, evictions)
        except Exception as exc:  # a failing runtime callback must not take NRI down
            log.warning("nri: applying plugin updates failed: %s", exc)
            return updates

    # -- events -----------------------------------------------------------------------

    async def _relay(self, event: Event, request: Message) -> None:
        """Send a notification to every subscribed plugin, in order."""
        try:
            response_cls: type[Message] = getattr(pb, f"{event.method}Response")
            for plugin in list(self._plugins):
                await plugin.call(event, request, response_cls)
        finally:
            self._drop_closed()

    async def run_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """Relay RunPodSandbox (after the sandbox is set up, before it is reported ready)."""
        if self.enabled:
            async with self._lock:
                await self._relay(Event.RUN_POD_SANDBOX, pb.RunPodSandboxRequest(pod=pod))

    async def update_pod_sandbox(
        self, pod: pb.PodSandbox, overhead: pb.LinuxResources | None = None, resources: pb.LinuxResources | None = None
    ) -> None:
        """Relay UpdatePodSandbox."""
        if self.enabled:
            request = pb.UpdatePodSandboxRequest(pod=pod, overhead_linux_resources=overhead, linux_resources=resources)
            async with self._lock:
                await self._relay(Event.UPDATE_POD_SANDBOX, request)

    async def post_update_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """Relay PostUpdatePodSandbox."""
        if self.enabled:
            async with self._lock:
                await self._relay(Event.POST_UPDATE_POD_SANDBOX, pb.PostUpdatePodSandboxRequest(pod=pod))

    async def stop_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """Relay StopPodSandbox."""
        if self.enabled:
            async with self._lock:
                await self._relay(Event.STOP_POD_SANDBOX, pb.StopPodSandboxRequest(pod=pod))

    async def remove_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """Relay RemovePodSandbox."""
        if self.enabled:
            async with self._lock:
                await self._relay(Event.REMOVE_POD_SANDBOX, pb.RemovePodSandboxRequest(pod=pod))

    async def create_container(self, pod: pb.PodSandbox, container: pb.Container) -> CreateContainerResult:
        """Ask every plugin for adjustments of a container about to be created.

        Returns:
            The merged adjustment, updates and evictions (empty when NRI is disabled).

        Raises:
            ConflictError: Two plugins set the same field (the message names both).
            PluginError: A plugin failed the request.
            ValidationError: A validator plugin rejected the result.
        """
        if not self.enabled:
            return CreateContainerResult(pb.ContainerAdjustment())
        request = pb.CreateContainerRequest(pod=pod, container=container)
        pristine = pb.Container()
        pristine.CopyFrom(container)
        result = CreateResult(request)
        async with self._lock:
            self._ctr_state[container.id] = "created"
            try:
                for plugin in list(self._plugins):
                    reply = await plugin.call(Event.CREATE_CONTAINER, request, pb.CreateContainerResponse)
                    if reply is not None:
                        result.apply(reply, plugin.name)
                await validate_adjustment(self._plugins, pod, pristine, result)
            finally:
                self._drop_closed()
        reply = result.response()
        return CreateContainerResult(reply.adjust, list(reply.update), list(reply.evict))

    async def post_create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """Relay PostCreateContainer."""
        if self.enabled:
            async with self._lock:
                await self._relay(
                    Event.POST_CREATE_CONTAINER, pb.PostCreateContainerRequest(pod=pod, container=container)
                )

    async def start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """Relay StartContainer (before the container's process starts)."""
        if self.enabled:
            async with self._lock:
                self._ctr_state[container.id] = "running"
                await self._relay(Event.START_CONTAINER, pb.StartContainerRequest(pod=pod, container=container))

    async def post_start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """Relay PostStartContainer."""
        if self.enabled:
            async with self._lock:
                await self._relay(
                    Event.POST_START_CONTAINER, pb.PostStartContainerRequest(pod=pod, container=container)
                )

    async def update_container(
        self, pod: pb.PodSandbox, container: pb.Container, resources: pb.LinuxResources
    ) -> UpdateContainerResult:
        """Let plugins alter a resource update and update other containers along.

        Raises:
            ConflictError: Two plugins updated the same resource.
            PluginError: A plugin failed the request.
        """
        if not self.enabled:
            return UpdateContainerResult(resources)
        request = pb.UpdateContainerRequest(pod=pod, container=container, linux_resources=resources)
        result = UpdateResult(request)
        async with self._lock:
            try:
                for plugin in list(self._plugins):
                    reply = await plugin.call(Event.UPDATE_CONTAINER, request, pb.UpdateContainerResponse)
                    if reply is not None:
                        result.apply(reply.update, plugin.name, reply.evict)
            finally:
                self._drop_closed()
        updates = result.response_updates()
        final = updates.pop().linux.resources
        return UpdateContainerResult(final, updates, result.evictions)

    async def post_update_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """Relay PostUpdateContainer."""
        if self.enabled:
            async with self._lock:
                await self._relay(
                    Event.POST_UPDATE_CONTAINER, pb.PostUpdateContainerRequest(pod=pod, container=container)
                )

    async def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> list[pb.ContainerUpdate]:
        """Relay StopContainer once per container (also call it when a container exits on its own).

        Returns:
            Updates the plugins want on the remaining containers.
        """
        if not self.enabled:
            return []
        async with self._lock:
            return await self._stop_locked(pod, container)

    async def _stop_locked(self, pod: pb.PodSandbox, container: pb.Container) -> list[pb.ContainerUpdate]:
        if self._ctr_state.get(container.id) not in ("created", "running"):
            return []
        result = UpdateResult(None)
        request = pb.StopContainerRequest(pod=pod, container=container)
        try:
            for plugin in list(self._plugins):
                reply = await plugin.call(Event.STOP_CONTAINER, request, pb.StopContainerResponse)
                if reply is not None:
                    result.apply(reply.update, plugin.name)
        finally:
            self._ctr_state[container.id] = "stopped"
            self._drop_closed()
        return result.response_updates()

    async def remove_container(self, pod: pb.PodSandbox, container: pb.Container) -> list[pb.ContainerUpdate]:
        """Relay RemoveContainer (stopping it first if NRI has not seen it stop).

        Returns:
            Updates requested while stopping it, if it had to be stopped.
        """
        if not self.enabled:
            return []
        async with self._lock:
            if container.id not in self._ctr_state:
                return []
            updates = await self._stop_locked(pod, container)
            try:
                await self._relay(Event.REMOVE_CONTAINER, pb.RemoveContainerRequest(pod=pod, container=container))
            finally:
                self._ctr_state.pop(container.id, None)
        return updates
