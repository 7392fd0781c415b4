"""A Python SDK for NRI plugins (containerd ships only a Go one, ``pkg/stub``).

Subclass :class:`Plugin` and override the hooks you need; the plugin subscribes to exactly
the events whose hooks you override::

    class Tagger(Plugin):
        async def create_container(self, pod, container):
            return Adjustment().add_env("POD_NAME", pod.name)

    if __name__ == "__main__":
        run_plugin(Tagger)

Launched by the runtime, a plugin finds its connection in the inherited fd named by
``NRI_PLUGIN_SOCKET`` and its name and index in ``NRI_PLUGIN_NAME``/``NRI_PLUGIN_IDX``;
started by hand, it connects to the runtime's socket and needs a name and a two-digit index
(``--name``/``--idx``, or a program name like ``10-tagger``).

A hook that raises fails the runtime's operation (e.g. the container is not created); a hook
that takes longer than the runtime's request timeout gets the plugin disconnected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.ttrpc import CallContext, Client, Server

from .adjust import Adjustment
from .api import (
    NRI_VERSION,
    PLUGIN_IDX_ENV,
    PLUGIN_NAME_ENV,
    PLUGIN_SERVICE,
    PLUGIN_SOCKET_ENV,
    RUNTIME_SERVICE,
    VALID_EVENTS,
    Event,
    check_plugin_index,
    check_plugin_name,
    event_bit,
    event_names,
    parse_plugin_name,
    pb,
)
from .config import DEFAULT_SOCKET_PATH
from .errors import NRIError, RegistrationError
from .mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Mux

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger(__name__)

Updates = Sequence[pb.ContainerUpdate] | None

# Events whose hooks take only the pod.
_POD_EVENTS = (Event.RUN_POD_SANDBOX, Event.STOP_POD_SANDBOX, Event.REMOVE_POD_SANDBOX, Event.POST_UPDATE_POD_SANDBOX)


class Plugin:
    """Base class of an NRI plugin. Override hooks; leave the rest alone.

    Args:
        name: Plugin name; default ``$NRI_PLUGIN_NAME`` or the program name.
        index: Two-digit index; default ``$NRI_PLUGIN_IDX`` or the ``NN-`` prefix of the name.
        socket_path: The runtime's NRI socket when not launched by the runtime.

    Attributes:
        config: The configuration text the runtime sent (drop-in file contents), or
            ``default_config`` when it sent none.
        default_config: Configuration to use when the runtime sends none (``--config``).
        runtime_name: Name of the runtime, from Configure.
        runtime_version: Version of the runtime, from Configure.
        request_timeout: Seconds the runtime grants each hook, from Configure.
        registration_timeout: Seconds the runtime grants registration, from Configure.
    """

    def __init__(self, *, name: str | None = None, index: str | None = None, socket_path: str | None = None) -> None:
        name = name or os.environ.get(PLUGIN_NAME_ENV) or os.path.basename(sys.argv[0] or "plugin")
        index = index or os.environ.get(PLUGIN_IDX_ENV) or ""
        if not index:
            try:
                index, name = parse_plugin_name(name)
            except ValueError:
                pass
        self.name = name
        self.index = index
        self.socket_path = socket_path or DEFAULT_SOCKET_PATH
        self.config = ""
        self.default_config = ""
        self.runtime_name = ""
        self.runtime_version = ""
        self.request_timeout = 2.0
        self.registration_timeout = 5.0
        self._mux: Mux | None = None
        self._client: Client | None = None
        self._server = Server()
        self._server.register(PLUGIN_SERVICE, self._method_table())
        self._configured: asyncio.Future[None] | None = None
        self._sync_pods: list[pb.PodSandbox] = []
        self._sync_ctrs: list[pb.Container] = []

    # -- hooks: override what you need ---------------------------------------------------

    async def configure(self, config: str, runtime_name: str, runtime_version: str) -> int | None:
        """Called once after registration. Return an event mask to narrow the subscription."""
        return None

    async def synchronize(self, pods: Sequence[pb.PodSandbox], containers: Sequence[pb.Container]) -> Updates:
        """The runtime's existing pods and containers; may return container updates."""
        return None

    async def shutdown(self) -> None:
        """The runtime is shutting down."""

    async def run_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """A pod sandbox was set up."""

    async def update_pod_sandbox(
        self, pod: pb.PodSandbox, overhead: pb.LinuxResources, resources: pb.LinuxResources
    ) -> None:
        """A pod's resources are being updated."""

    async def post_update_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """A pod's resources were updated."""

    async def stop_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """A pod sandbox is being stopped."""

    async def remove_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        """A pod sandbox is being removed."""

    async def create_container(
        self, pod: pb.PodSandbox, container: pb.Container
    ) -> Adjustment | pb.ContainerAdjustment | pb.CreateContainerResponse | None:
        """A container is being created: return the changes you want (see :class:`Adjustment`)."""
        return None

    async def post_create_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """A container was created."""

    async def start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """A container is about to start."""

    async def post_start_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """A container started."""

    async def update_container(
        self, pod: pb.PodSandbox, container: pb.Container, resources: pb.LinuxResources
    ) -> Updates | pb.UpdateContainerResponse:
        """A container's resources are being updated; may return updates (this one included)."""
        return None

    async def post_update_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """A container's resources were updated."""

    async def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> Updates:
        """A container stopped (or is being stopped); may return updates of other containers."""
        return None

    async def remove_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        """A container is being removed."""

    async def validate_container_adjustment(self, request: pb.ValidateContainerAdjustmentRequest) -> str | None:
        """Check the merged adjustments of all plugins; return a reason to reject them."""
        return None

    # -- talking to the runtime ------------------------------------------------------------

    @property
    def events(self) -> int:
        """The event mask of the hooks this class overrides."""
        mask = 0
        for event in Event:
            hook = event.name.lower()
            if getattr(type(self), hook) is not getattr(Plugin, hook):
                mask |= event_bit(event)
        return mask

    async def update_containers(
        self, updates: Sequence[pb.ContainerUpdate], evictions: Sequence[pb.ContainerEviction] = ()
    ) -> list[pb.ContainerUpdate]:
        """Ask the runtime, unsolicited, to update or evict containers; returns failed updates.

        Raises:
            NRIError: If not connected.
        """
        if self._client is None:
            raise NRIError("plugin is not connected")
        request = pb.UpdateContainersRequest(update=list(updates), evict=list(evictions))
        reply = await self._client.call(
            RUNTIME_SERVICE, "UpdateContainers", request, pb.UpdateContainersResponse, timeout=self.request_timeout
        )
        return list(reply.failed)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Connect, register and wait until the runtime has configured us.

        Args:
            sock: An already connected socket; default the inherited fd or ``socket_path``.

        Raises:
            RegistrationError: For an invalid name/index or a failed registration.
        """
        try:
            check_plugin_name(self.name)
            check_plugin_index(self.index)
        except ValueError as exc:
            raise RegistrationError(str(exc)) from exc
        if sock is None and (fd := os.environ.get(PLUGIN_SOCKET_ENV)):
            sock = socket.socket(fileno=int(fd))
        if sock is None:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        else:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        self._configured = asyncio.get_running_loop().create_future()
        mux = self._mux = Mux(reader, writer)
        self._client = Client(*mux.open(RUNTIME_SERVICE_CONN))
        serve = self._server.serve_connection(*mux.open(PLUGIN_SERVICE_CONN))
        self._serving = spawn(serve, name=f"nri plugin {self.name} service")
        mux.start()
        request = pb.RegisterPluginRequest(plugin_name=self.name, plugin_idx=self.index, NRI_version=NRI_VERSION)
        try:
            await self._client.call(RUNTIME_SERVICE, "RegisterPlugin", request, pb.Empty, timeout=5.0)
            closed = spawn(mux.wait_closed(), name="nri plugin connection watch")
            waiters: list[asyncio.Future[Any]] = [self._configured, closed]
            try:
                done, _ = await asyncio.wait(
                    waiters,
                    timeout=self.registration_timeout + self.request_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                closed.cancel()
            if self._configured not in done:
                raise NRIError("runtime closed the connection" if done else "runtime did not configure us in time")
            self._configured.result()
        except Exception as exc:
            await self.stop()
            raise RegistrationError(f"failed to register with the runtime: {exc}") from exc
        log.info("nri plugin %s-%s started", self.index, self.name)

    async def wait(self) -> str:
        """Wait until the runtime closes the connection; returns why."""
        if self._mux is None:
            return "not started"
        return await self._mux.wait_closed()

    async def stop(self) -> None:
        """Disconnect."""
        if self._mux is not None:
            await self._mux.close("plugin stopped")
        if self._client is not None:
            await self._client.close()
        await self._server.close()

    async def run(self, sock: socket.socket | None = None) -> str:
        """:meth:`start`, serve until the runtime goes away, then :meth:`stop`."""
        await self.start(sock)
        try:
            return await self.wait()
        finally:
            await self.stop()

    # -- Plugin service handlers -------------------------------------------------------------

    def _method_table(self) -> dict[str, tuple[type[Message], Any]]:
        table: dict[str, tuple[type[Message], Any]] = {
            "Configure": (pb.ConfigureRequest, self._on_configure),
            "Synchronize": (pb.SynchronizeRequest, self._on_synchronize),
            "Shutdown": (pb.Empty, self._on_shutdown),
            "StateChange": (pb.StateChangeEvent, self._on_state_change),
        }
        for event in Event:
            table[event.method] = (getattr(pb, f"{event.method}Request"), self._event_handler(event))
        return table

    async def _on_configure(self, ctx: CallContext, req: pb.ConfigureRequest) -> pb.ConfigureResponse:
        # External plugins get no configuration from the runtime: fall back to our own.
        self.config = req.config or self.default_config
        self.runtime_name, self.runtime_version = req.runtime_name, req.runtime_version
        if req.request_timeout:
            self.request_timeout = req.request_timeout / 1000
        if req.registration_timeout:
            self.registration_timeout = req.registration_timeout / 1000
        try:
            mask = await self.configure(self.config, req.runtime_name, req.runtime_version) or self.events
            if extra := mask & ~self.events:
                raise NRIError(f"plugin subscribed to events it does not handle: {', '.join(event_names(extra))}")
        except Exception as exc:
            if self._configured is not None and not self._configured.done():
                self._configured.set_exception(exc)
            raise
        if self._configured is not None and not self._configured.done():
            self._configured.set_result(None)
        log.info("nri plugin %s subscribed to %s", self.name, ",".join(event_names(mask)) or "nothing")
        # A plugin without hooks answers 0, which the runtime reads as "every event": the
        # base class answers those calls with empty responses, as Go's stub does.
        return pb.ConfigureResponse(events=mask & VALID_EVENTS)

    async def _on_synchronize(self, ctx: CallContext, req: pb.SynchronizeRequest) -> pb.SynchronizeResponse:
        self._sync_pods.extend(req.pods)
        self._sync_ctrs.extend(req.containers)
        if req.more:
            return pb.SynchronizeResponse(more=True)
        pods, ctrs = self._sync_pods, self._sync_ctrs
        self._sync_pods, self._sync_ctrs = [], []
        updates = await self.synchronize(pods, ctrs)
        return pb.SynchronizeResponse(update=list(updates or ()))

    async def _on_shutdown(self, ctx: CallContext, req: pb.Empty) -> pb.Empty:
        await self.shutdown()
        return pb.Empty()

    async def _on_state_change(self, ctx: CallContext, req: pb.StateChangeEvent) -> pb.Empty:
        try:
            event = Event(req.event)
        except ValueError:
            return pb.Empty()
        hook = getattr(self, event.name.lower())
        if (
            event in (Event.RUN_POD_SANDBOX, Event.STOP_POD_SANDBOX, Event.REMOVE_POD_SANDBOX)
            or event is Event.POST_UPDATE_POD_SANDBOX
        ):
            await hook(req.pod)
        else:
            await hook(req.pod, req.container)
        return pb.Empty()

    def _event_handler(self, event: Event) -> Any:
        hook_name = event.name.lower()
        response_cls = getattr(pb, f"{event.method}Response")

        async def handle(ctx: CallContext, req: Any) -> Any:
            hook = getattr(self, hook_name)
            if event is Event.CREATE_CONTAINER:
                return _create_response(await hook(req.pod, req.container))
            if event is Event.UPDATE_CONTAINER:
                result = await hook(req.pod, req.container, req.linux_resources)
                if isinstance(result, pb.UpdateContainerResponse):
                    return result
                return pb.UpdateContainerResponse(update=list(result or ()))
            if event is Event.STOP_CONTAINER:
                return pb.StopContainerResponse(update=list(await hook(req.pod, req.container) or ()))
            if event is Event.VALIDATE_CONTAINER_ADJUSTMENT:
                reason = await hook(req)
                return pb.ValidateContainerAdjustmentResponse(reject=reason is not None, reason=reason or "")
            if event is Event.UPDATE_POD_SANDBOX:
                await hook(req.pod, req.overhead_linux_resources, req.linux_resources)
            elif event in _POD_EVENTS:
                await hook(req.pod)
            else:
                await hook(req.pod, req.container)
            return response_cls()

        return handle


def _create_response(result: object) -> pb.CreateContainerResponse:
    if result is None:
        return pb.CreateContainerResponse()
    if isinstance(result, Adjustment):
        return result.response()
    if isinstance(result, pb.CreateContainerResponse):
        return result
    if isinstance(result, pb.ContainerAdjustment):
        return pb.CreateContainerResponse(adjust=result)
    raise TypeError(f"create_container returned {type(result).__name__}, expected an Adjustment")
