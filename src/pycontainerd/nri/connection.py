"""The runtime's side of one plugin: its connection, registration, configuration and calls.

Life of a :class:`PluginConnection`: :meth:`~PluginConnection.connect` sets up the mux (a
ttrpc client for the Plugin service, a ttrpc server for the Runtime service);
:meth:`~PluginConnection.start` waits for ``RegisterPlugin`` within the registration
timeout and calls ``Configure``; the adaptation then synchronizes it and relays events with
:meth:`~PluginConnection.call`. Every request is bounded by the request timeout. A request
that times out, or a broken connection, *closes* the plugin (the caller drops it and goes
on without it); an error status from the plugin fails the operation instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from pycontainerd.aio import spawn
from pycontainerd.ttrpc import CallContext, Client, Code, Server, TTRPCConnectionError, TTRPCError

from .api import (
    NRI_VERSION,
    PLUGIN_SERVICE,
    RUNTIME_SERVICE,
    VALID_EVENTS,
    Event,
    check_plugin_index,
    check_plugin_name,
    event_bit,
    event_names,
    pb,
)
from .errors import PluginError, RegistrationError, ValidationError
from .mux import PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN, Mux

if TYPE_CHECKING:
    from .launch import LaunchedProcess
    from .result import CreateResult

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

UpdateCallback = Callable[
    [list[pb.ContainerUpdate], list[pb.ContainerEviction]], Awaitable[Sequence[pb.ContainerUpdate]]
]
"""Applies container updates and evictions a plugin asked for; returns the updates that failed."""

# Events that older plugins receive through StateChange when the dedicated method is missing.
_STATE_CHANGE_EVENTS = {
    Event.RUN_POD_SANDBOX,
    Event.POST_UPDATE_POD_SANDBOX,
    Event.STOP_POD_SANDBOX,
    Event.REMOVE_POD_SANDBOX,
    Event.POST_CREATE_CONTAINER,
    Event.START_CONTAINER,
    Event.POST_START_CONTAINER,
    Event.POST_UPDATE_CONTAINER,
    Event.REMOVE_CONTAINER,
}
_MIN_SYNC_CHUNK = 8


class PluginConnection:
    """One plugin, as the runtime sees it.

    Args:
        index: Two-digit index (launched plugins; external ones announce theirs).
        name: Base name (launched plugins; external ones announce theirs).
        config: Configuration text sent in Configure.
        process: The process, for plugins the runtime launched.
        registration_timeout: Seconds the plugin has to register.
        request_timeout: Seconds the plugin has for each request.
        on_update: Handler of the plugin's unsolicited UpdateContainers.
    """

    def __init__(
        self,
        *,
        index: str = "",
        name: str = "",
        config: str = "",
        process: LaunchedProcess | None = None,
        registration_timeout: float,
        request_timeout: float,
        on_update: UpdateCallback,
    ) -> None:
        self.index = index
        self.base = name
        self.config = config
        self.process = process
        self.events = 0
        self.registration_timeout = registration_timeout
        self.request_timeout = request_timeout
        self._on_update = on_update
        self._mux: Mux | None = None
        self._client: Client | None = None
        self._server = Server()
        self._server.register(
            RUNTIME_SERVICE,
            {
                "RegisterPlugin": (pb.RegisterPluginRequest, self._register_plugin),
                "UpdateContainers": (pb.UpdateContainersRequest, self._update_containers),
            },
        )
        self._registered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self.close_reason = ""

    @property
    def name(self) -> str:
        """``<index>-<name>``, how plugins are named in logs and conflict errors."""
        return f"{self.index}-{self.base}"

    @property
    def external(self) -> bool:
        """True for plugins that connected on their own (not launched by us)."""
        return self.process is None

    @property
    def closed(self) -> bool:
        """True once the connection is gone; the adaptation then drops the plugin."""
        return self._closed or (self._mux is not None and self._mux.closed)

    @property
    def sort_key(self) -> tuple[str, str]:
        """Invocation order: by index, then by name."""
        return (self.index, self.base)

    def subscribed(self, event: Event) -> bool:
        """Whether the plugin asked for ``event`` in Configure."""
        return bool(self.events & event_bit(event))

    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Set up both multiplexed ttrpc connections over the plugin's socket connection."""
        mux = Mux(reader, writer)
        self._mux = mux
        self._client = Client(*mux.open(PLUGIN_SERVICE_CONN))
        reader, writer = mux.open(RUNTIME_SERVICE_CONN)
        self._tasks.append(spawn(self._server.serve_connection(reader, writer), name=f"nri runtime service {id(self)}"))
        self._tasks.append(spawn(self._watch(mux), name=f"nri plugin watch {id(self)}"))
        mux.start()

    async def _watch(self, mux: Mux) -> None:
        reason = await mux.wait_closed()
        if not self._registered.done():
            self._registered.set_exception(RegistrationError(f"connection closed before registration: {reason}"))
        if not self._closed:
            log.info("nri: connection to plugin %s closed (%s)", self.name, reason)
            self.close_reason = reason
        await self.close()

    async def start(self, runtime_name: str, runtime_version: str) -> None:
        """Wait for registration, then configure the plugin.

        Raises:
            RegistrationError: On timeout, an invalid registration, a lost connection or a
                failed configuration; the plugin is closed then.
        """
        try:
            async with asyncio.timeout(self.registration_timeout):
                await asyncio.shield(self._registered)
        except TimeoutError:
            await self.close("registration timed out")
            raise RegistrationError(f"plugin {self.name}: registration timed out") from None
        except RegistrationError:
            await self.close("registration failed")
            raise
        request = pb.ConfigureRequest(
            config=self.config,
            runtime_name=runtime_name,
            runtime_version=runtime_version,
            registration_timeout=int(self.registration_timeout * 1000),
            request_timeout=int(self.request_timeout * 1000),
            NRI_version=NRI_VERSION,
        )
        try:
            reply = await self._raw_call("Configure", request, pb.ConfigureResponse)
        except (TTRPCError, TTRPCConnectionError) as exc:
            await self.close("configuration failed")
            raise RegistrationError(f"plugin {self.name}: failed to configure plugin: {exc}") from exc
        events = reply.events & 0xFFFFFFFF
        if events == 0:
            events = VALID_EVENTS
        elif extra := events & ~VALID_EVENTS:
            await self.close("invalid events")
            raise RegistrationError(f"plugin {self.name}: invalid plugin events: 0x{extra:x}")
        self.events = events
        log.info("nri: plugin %s subscribed to %s", self.name, ",".join(event_names(events)))

    async def synchronize(
        self, pods: Sequence[pb.PodSandbox], containers: Sequence[pb.Container]
    ) -> list[pb.ContainerUpdate]:
        """Send the runtime's state, split into chunks if one message would be too large.

        Raises:
            PluginError: If the plugin fails or cannot take split messages (it is closed).
        """
        pods, containers = list(pods), list(containers)
        budget = max(len(pods) + len(containers), 1)  # objects per message; halved while too large
        while True:
            n_pods = min(len(pods), budget)
            n_ctrs = min(len(containers), budget - n_pods)
            more = len(pods) > n_pods or len(containers) > n_ctrs
            request = pb.SynchronizeRequest(pods=pods[:n_pods], containers=containers[:n_ctrs], more=more)
            try:
                reply = await self._raw_call("Synchronize", request, pb.SynchronizeResponse)
            except TTRPCError as exc:
                if exc.code != Code.RESOURCE_EXHAUSTED or budget <= _MIN_SYNC_CHUNK:
                    await self.close("synchronization failed")
                    raise PluginError(self.name, f"failed to synchronize: {exc}") from exc
                budget = max(budget // 2, _MIN_SYNC_CHUNK)
                continue
            except TTRPCConnectionError as exc:
                await self.close("synchronization failed")
                raise PluginError(self.name, f"failed to synchronize: {exc}") from exc
            if not more:
                return list(reply.update)
            if reply.update or reply.more != more:
                await self.close("split synchronization unsupported")
                raise PluginError(self.name, "plugin does not handle split sync requests")
            pods, containers = pods[n_pods:], containers[n_ctrs:]

    async def call(self, event: Event, request: Message, response_cls: type[M]) -> M | None:
        """Relay ``event`` if subscribed; None if not subscribed or the plugin was dropped.

        Raises:
            PluginError: If the plugin answered with an error status.
        """
        if self.closed or not self.subscribed(event):
            return None
        try:
            try:
                return await self._raw_call(event.method, request, response_cls)
            except TTRPCError as exc:
                if exc.code != Code.UNIMPLEMENTED or event not in _STATE_CHANGE_EVENTS:
                    raise
            # An older plugin: the same notification through StateChange.
            await self._raw_call("StateChange", _state_change(event, request), pb.Empty)
            return response_cls()
        except TTRPCError as exc:
            if exc.code == Code.DEADLINE_EXCEEDED:
                log.error("nri: closing plugin %s, %s timed out", self.name, event.method)
                await self.close(f"{event.method} timed out")
                return None
            raise PluginError(self.name, f"{event.method} failed: {exc.message}") from exc
        except TTRPCConnectionError as exc:
            log.error("nri: closing plugin %s, %s failed: %s", self.name, event.method, exc)
            await self.close(f"connection lost during {event.method}")
            return None

    async def shutdown(self) -> None:
        """Tell the plugin the runtime is going away (best effort)."""
        if self.closed:
            return
        with contextlib.suppress(TTRPCError, TTRPCConnectionError):
            await self._raw_call("Shutdown", pb.Empty(), pb.Empty)

    async def _raw_call(self, method: str, request: Message, response_cls: type[M]) -> M:
        if self._client is None:
            raise TTRPCConnectionError("plugin not connected")
        return await self._client.call(PLUGIN_SERVICE, method, request, response_cls, timeout=self.request_timeout)

    async def close(self, reason: str = "") -> None:
        """Close the connection (idempotent); the process, if any, is left to :meth:`stop`."""
        if self._closed:
            return
        self._closed = True
        if reason and not self.close_reason:
            self.close_reason = reason
        if not self._registered.done():
            self._registered.set_exception(RegistrationError(f"plugin closed: {reason}"))
        if not self._registered.cancelled():
            self._registered.exception()  # retrieved: no "never retrieved" warning
        if self._mux is not None:
            await self._mux.close(reason or "closed")
        if self._client is not None:
            await self._client.close()
        await self._server.close()

    async def stop(self) -> None:
        """Close, and terminate the process of a launched plugin."""
        await self.close("stopped")
        if self.process is not None:
            await self.process.terminate()

    async def _register_plugin(self, ctx: CallContext, req: pb.RegisterPluginRequest) -> pb.Empty:
        if self.external:
            try:
                check_plugin_name(req.plugin_name)
                check_plugin_index(req.plugin_idx)
            except ValueError as exc:
                if not self._registered.done():
                    self._registered.set_exception(RegistrationError(f"plugin registered invalidly: {exc}"))
                raise TTRPCError(Code.INVALID_ARGUMENT, str(exc)) from exc
            self.base, self.index = req.plugin_name, req.plugin_idx
        log.info("nri: plugin %s registered (NRI version %s)", self.name, req.NRI_version or "unknown")
        if not self._registered.done():
            self._registered.set_result(None)
        return pb.Empty()

    async def _update_containers(
        self, ctx: CallContext, req: pb.UpdateContainersRequest
    ) -> pb.UpdateContainersResponse:
        log.info("nri: plugin %s requested container updates", self.name)
        failed = await self._on_update(list(req.update), list(req.evict))
        return pb.UpdateContainersResponse(failed=list(failed))


def _state_change(event: Event, request: Message) -> pb.StateChangeEvent:
    """The StateChange notification equivalent to a dedicated event request."""
    fields = request.DESCRIPTOR.fields_by_name
    msg: Any = request
    change = pb.StateChangeEvent(event=int(event))
    if "pod" in fields and msg.HasField("pod"):
        change.pod.CopyFrom(msg.pod)
    if "container" in fields and msg.HasField("container"):
        change.container.CopyFrom(msg.container)
    return change


async def validate_adjustment(
    plugins: Sequence[PluginConnection], pod: pb.PodSandbox, pristine: pb.Container, result: CreateResult
) -> None:
    """Let the validator plugins among ``plugins`` veto a merged CreateContainer result.

    Validators run concurrently; each sees the pristine container, the merged adjustment
    and updates, and which plugin owns what.

    Raises:
        ValidationError: If a validator rejects it.
    """
    validators = [p for p in plugins if p.subscribed(Event.VALIDATE_CONTAINER_ADJUSTMENT) and not p.closed]
    if not validators:
        return
    reply = result.response()
    request = pb.ValidateContainerAdjustmentRequest(
        pod=pod,
        container=pristine,
        adjust=reply.adjust,
        update=reply.update,
        owners=result.owners.message,
        plugins=[pb.PluginInstance(name=p.base, index=p.index) for p in plugins],
    )
    event, response_cls = Event.VALIDATE_CONTAINER_ADJUSTMENT, pb.ValidateContainerAdjustmentResponse
    answers = await asyncio.gather(*(p.call(event, request, response_cls) for p in validators))
    for plugin, answer in zip(validators, answers, strict=True):
        if answer is not None and answer.reject:
            raise ValidationError(f"validator plugin {plugin.name} rejected the adjustment: {answer.reason}")
