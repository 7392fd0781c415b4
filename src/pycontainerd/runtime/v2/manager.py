"""The task manager: one shim per task, found again after a daemon restart.

It speaks the shim Task API's protobuf messages (they are the runtime v2 domain language);
the gRPC Tasks service translates its own messages to and from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from pycontainerd import pbtime
from pycontainerd.aio import spawn
from pycontainerd.api.containerd.events import task_pb2 as task_events
from pycontainerd.api.containerd.runtime.sandbox.v1 import sandbox_pb2
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.errdefs import AlreadyExists, ContainerdError, FailedPrecondition, NotFound, Unavailable
from pycontainerd.namespaces import RequestContext, namespace_required
from pycontainerd.runtime.v2 import bundle as bundles
from pycontainerd.runtime.v2.config import with_runc_root
from pycontainerd.runtime.v2.shim import (
    CALL_TIMEOUT,
    Bootstrap,
    ShimClient,
    ShimLog,
    binary_for,
    delete_shim,
    start_shim,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from google.protobuf.message import Message

    from pycontainerd.api.containerd.types import mount_pb2
    from pycontainerd.core.containers import Container
    from pycontainerd.runtime.v2.config import RuntimeEntry

log = logging.getLogger(__name__)
DEAD_SHIM_EXIT_STATUS = 255
SHUTDOWN_TIMEOUT = 10.0
RESTORE_TIMEOUT = 5.0
# Giving up on a shim (failed create or delete): how long each of its calls may take, and how
# long it gets to exit after Shutdown before it is killed (only a shim that serves nothing else).
TEARDOWN_CALL_TIMEOUT = 5.0
TEARDOWN_EXIT_TIMEOUT = 5.0
SANDBOX_SERVICE = "containerd.runtime.sandbox.v1.Sandbox"
# A task in these states is alive: a failed Delete of it is reported, nothing is torn down.
_LIVE_STATES = (task_pb2.RUNNING, task_pb2.PAUSED, task_pb2.PAUSING)


@dataclass(slots=True)
class ShimTask:
    """A task and the shim that runs it."""

    bundle: bundles.Bundle
    client: ShimClient
    binary: str
    runtime: str
    shim_log: ShimLog | None = None
    pid: int = 0
    address: str = ""
    namespace: str = field(init=False)

    def __post_init__(self) -> None:
        self.namespace = self.bundle.namespace

    @property
    def id(self) -> str:
        """The task (= container) ID."""
        return self.bundle.id


class TaskManager:
    """Creates tasks through shims and routes calls to them."""

    def __init__(
        self,
        state_root: Path,
        root: Path,
        *,
        grpc_address: str,
        ttrpc_address: str,
        publish: Callable[[str, str, Message], object] | None = None,
        debug: bool = False,
        runtimes: Mapping[str, RuntimeEntry] | None = None,
        runc_root: str = "",
    ) -> None:
        self._state_root = state_root
        self._root = root
        self._grpc_address = grpc_address
        self._ttrpc_address = ttrpc_address
        self._publish = publish
        self._debug = debug
        self._runtimes = dict(runtimes or {})
        self._runc_root = runc_root
        self._tasks: dict[tuple[str, str], ShimTask] = {}
        self._closing = False
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def get(self, ctx: RequestContext, task_id: str) -> ShimTask:
        """The task of a container; NotFound if it has none."""
        ns = namespace_required(ctx)
        task = self._tasks.get((ns, task_id))
        if task is None:
            raise NotFound(f"task {task_id} not found")
        return task

    def list(self, ctx: RequestContext) -> list[ShimTask]:
        """Tasks of the namespace."""
        ns = namespace_required(ctx)
        return [t for (tns, _), t in sorted(self._tasks.items()) if tns == ns]

    async def create(
        self,
        ctx: RequestContext,
        container: Container,
        *,
        rootfs: Sequence[mount_pb2.Mount],
        stdin: str,
        stdout: str,
        stderr: str,
        terminal: bool,
        options: bytes | None,
        runtime_path: str = "",
        sandbox_api: bool = False,
        checkpoint: str = "",
    ) -> ShimTask:
        """Start a shim for ``container`` and create its task (with ``sandbox_api``: create the
        sandbox through the shim's Sandbox API instead, the container being the sandbox)."""
        ns = namespace_required(ctx)
        key = (ns, container.id)
        async with self._lock(key):
            if key in self._tasks:
                raise AlreadyExists(f"task {container.id}")
            runtime = container.runtime.name
            entry = self._runtimes.get(runtime)
            binary = runtime_path or binary_for(entry.path if entry is not None and entry.path else runtime)
            if options is None and entry is not None:
                options = entry.runc_options(runtime)
            protocol = entry.protocol if entry is not None else ""
            if self._runc_root:
                # Keep runc's state under our state dir: Go shims otherwise use containerd's
                # /run/containerd/runc, which a real containerd on the same host also uses.
                options = with_runc_root(options, self._runc_root)
            spec = container.spec.value if container.spec is not None else None
            bundle = bundles.new_bundle(self._state_root, self._root, ns, container.id, spec)
            shim_log: ShimLog | None = None
            client: ShimClient | None = None
            try:
                if await asyncio.to_thread(bundles.premount_idmapped, bundle, binary, rootfs):
                    rootfs = ()
                shim_log = ShimLog(bundle)
                boot = await start_shim(
                    binary,
                    bundle,
                    grpc_address=self._grpc_address,
                    ttrpc_address=self._ttrpc_address,
                    options=options or b"",
                    debug=self._debug,
                    protocol=protocol,
                )
                bundle.write_bootstrap(boot.address, boot.protocol, boot.version, binary, runtime)
                client = await ShimClient.connect(boot, ns)
                request = shim_pb2.CreateTaskRequest(
                    id=container.id,
                    bundle=str(bundle.path),
                    rootfs=list(rootfs),
                    terminal=terminal,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    checkpoint=checkpoint,
                )
                if options:
                    request.options.ParseFromString(options)
                if sandbox_api:
                    sandbox_request = sandbox_pb2.CreateSandboxRequest(
                        sandbox_id=container.id, bundle_path=str(bundle.path), rootfs=list(rootfs)
                    )
                    if options:
                        sandbox_request.options.ParseFromString(options)
                    await client.call(
                        "CreateSandbox", sandbox_request, sandbox_pb2.CreateSandboxResponse, service=SANDBOX_SERVICE
                    )
                    reply = shim_pb2.CreateTaskResponse(pid=0)
                else:
                    reply = await client.call("Create", request, shim_pb2.CreateTaskResponse)
            except BaseException:
                address = boot.address if client is not None else ""
                await self._teardown(bundle, binary, client, shim_log, exclusive=self._sole_user(address))
                raise
            task = ShimTask(bundle, client, binary, runtime, shim_log, reply.pid, boot.address)
            self._tasks[key] = task
            self._watch(task)
            return task

    def _sole_user(self, address: str, task: ShimTask | None = None) -> bool:
        """Whether no task we know but ``task`` is served by the shim at ``address``."""
        if not address:
            return False
        return not any(t.address == address for t in self._tasks.values() if t is not task)

    async def _teardown(
        self,
        bundle: bundles.Bundle,
        binary: str,
        client: ShimClient | None,
        shim_log: ShimLog | None,
        *,
        exclusive: bool,
    ) -> shim_pb2.DeleteResponse | None:
        """Give up on a task its shim could not create or delete, leaving nothing behind.

        The shim is asked to shut down (``now`` when it serves nothing else of ours: ours then
        exits even though it still lists the task; a shim that stays anyway is killed, as it
        serves nobody), ``<shim> delete`` cleans up the OCI runtime's state, then whatever is
        still mounted in the bundle is unmounted and the bundle removed. Every step runs even
        when an earlier one fails. Returns the ``delete`` binary's answer, if it gave one.
        """
        if client is not None:
            shim_pid = await _shim_pid(client, bundle.id) if exclusive else 0
            try:
                request = shim_pb2.ShutdownRequest(id=bundle.id, now=exclusive)
                await client.call("Shutdown", request, empty_pb2.Empty, TEARDOWN_CALL_TIMEOUT)
            except Exception:
                log.debug("shutdown of abandoned shim failed", exc_info=True)
            if shim_pid:
                await _reap_shim(shim_pid, TEARDOWN_EXIT_TIMEOUT)
            await client.close()
        reply: shim_pb2.DeleteResponse | None = None
        if bundle.read_bootstrap() is not None:
            try:
                reply = await delete_shim(
                    binary, bundle, grpc_address=self._grpc_address, ttrpc_address=self._ttrpc_address
                )
            except Exception as exc:
                log.warning("shim delete of %s/%s failed: %s", bundle.namespace, bundle.id, exc)
        if shim_log is not None:
            shim_log.close()
        await asyncio.to_thread(bundle.delete)
        return reply

    async def call(
        self, ctx: RequestContext, task_id: str, method: str, request: Message, response_cls: type
    ) -> Message:
        """Forward one Task API call to the task's shim."""
        task = self.get(ctx, task_id)
        result: Message = await task.client.call(method, request, response_cls)
        return result

    async def call_service(
        self,
        ctx: RequestContext,
        task_id: str,
        service: str,
        method: str,
        request: Message,
        response_cls: type,
        timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109 - the timeout travels in the ttrpc request
    ) -> Message:
        """One call to another service of the task's shim (e.g. its Sandbox API)."""
        task = self.get(ctx, task_id)
        result: Message = await task.client.call(method, request, response_cls, timeout, service=service)
        return result

    async def release(self, ctx: RequestContext, task_id: str) -> None:
        """Forget a task whose process the shim already removed (e.g. by ShutdownSandbox): ask the
        shim to exit if it serves nothing else, close the connection, remove the bundle."""
        ns = namespace_required(ctx)
        key = (ns, task_id)
        async with self._lock(key):
            task = self.get(ctx, task_id)
            try:
                await task.client.call(
                    "Shutdown", shim_pb2.ShutdownRequest(id=task_id), empty_pb2.Empty, SHUTDOWN_TIMEOUT
                )
            except Exception:
                log.debug("shim shutdown", exc_info=True)
            await task.client.close()
            if task.shim_log is not None:
                task.shim_log.close()
            task.bundle.delete()
            del self._tasks[key]

    async def wait(self, ctx: RequestContext, task_id: str, exec_id: str = "") -> shim_pb2.WaitResponse:
        """Block until the process exits (no timeout: ctr waits as long as the task runs)."""
        task = self.get(ctx, task_id)
        reply: shim_pb2.WaitResponse = await task.client.call(
            "Wait", shim_pb2.WaitRequest(id=task_id, exec_id=exec_id), shim_pb2.WaitResponse, timeout=365 * 86400
        )
        return reply

    async def delete(self, ctx: RequestContext, task_id: str) -> shim_pb2.DeleteResponse:
        """Delete the task, stop its shim, remove its bundle.

        When the shim fails to delete a task that is not running (e.g. the OCI runtime fails
        after a failed start), the task is torn down anyway (see :meth:`_teardown`) and the
        shim's error is raised: the task is gone, with its mounts and bundle. A running task
        whose Delete fails is left as it is, as containerd does.
        """
        ns = namespace_required(ctx)
        key = (ns, task_id)
        async with self._lock(key):
            task = self.get(ctx, task_id)
            try:
                reply: shim_pb2.DeleteResponse = await task.client.call(
                    "Delete", shim_pb2.DeleteRequest(id=task_id), shim_pb2.DeleteResponse
                )
            except Unavailable:
                reply = await self._cleanup_dead(task)
            except ContainerdError as exc:
                if await self._alive(task):
                    raise
                log.warning("shim failed to delete %s/%s, cleaning up after it: %s", ns, task_id, exc)
                await self._teardown(
                    task.bundle, task.binary, task.client, task.shim_log, exclusive=self._sole_user(task.address, task)
                )
                del self._tasks[key]
                raise
            else:
                try:
                    await task.client.call(
                        "Shutdown", shim_pb2.ShutdownRequest(id=task_id), empty_pb2.Empty, SHUTDOWN_TIMEOUT
                    )
                except Exception:
                    log.debug("shim shutdown", exc_info=True)
            await task.client.close()
            if task.shim_log is not None:
                task.shim_log.close()
            await asyncio.to_thread(task.bundle.delete)
            del self._tasks[key]
            return reply

    async def _alive(self, task: ShimTask) -> bool:
        """Whether the shim reports the task's init process as running or paused."""
        try:
            state = await task.client.call(
                "State", shim_pb2.StateRequest(id=task.id), shim_pb2.StateResponse, TEARDOWN_CALL_TIMEOUT
            )
        except (NotFound, Unavailable):
            return False
        except ContainerdError:
            # Unsure (a hung shim?): leave the task alone rather than pull its rootfs away.
            log.debug("state of %s/%s after a failed delete", task.namespace, task.id, exc_info=True)
            return True
        return state.status in _LIVE_STATES

    async def _cleanup_dead(self, task: ShimTask) -> shim_pb2.DeleteResponse:
        try:
            reply = await delete_shim(
                task.binary, task.bundle, grpc_address=self._grpc_address, ttrpc_address=self._ttrpc_address
            )
        except FailedPrecondition:
            reply = shim_pb2.DeleteResponse(pid=task.pid, exit_status=DEAD_SHIM_EXIT_STATUS)
        if not reply.HasField("exited_at"):
            reply.exited_at.CopyFrom(pbtime.now())
        if self._publish is not None:
            self._publish(
                task.namespace,
                "/tasks/exit",
                task_events.TaskExit(
                    container_id=task.id,
                    id=task.id,
                    pid=reply.pid,
                    exit_status=reply.exit_status,
                    exited_at=reply.exited_at,
                ),
            )
        return reply

    def _watch(self, task: ShimTask) -> None:
        """Notice a shim that dies under its task: clean up and report the task stopped."""

        async def watch() -> None:
            reason = await task.client.wait_closed()
            key = (task.namespace, task.id)
            if self._closing or self._tasks.get(key) is not task or self._lock(key).locked():
                return  # we closed it ourselves (delete or shutdown)
            async with self._lock(key):
                if self._tasks.get(key) is not task:
                    return
                log.warning("shim of %s/%s died: %s", task.namespace, task.id, reason)
                await self._cleanup_dead(task)
                if task.shim_log is not None:
                    task.shim_log.close()
                task.bundle.delete()
                del self._tasks[key]

        spawn(watch(), name=f"shim-watch-{task.id}")

    async def restore(self) -> None:
        """Reconnect to the shims of a previous daemon run, concurrently; clean up after dead ones."""
        bundles_found = bundles.load_bundles(self._state_root, self._root)
        await asyncio.gather(*(self._restore_one(b) for b in bundles_found))

    async def _restore_one(self, bundle: bundles.Bundle) -> None:
        boot = bundle.read_bootstrap()
        binary = bundle.read(bundles.SHIM_BINARY)
        runtime = bundle.read(bundles.RUNTIME)
        if boot is None:
            bundle.delete()
            return
        address, protocol, version = boot
        try:
            shim_log: ShimLog | None = ShimLog(bundle)
        except OSError:
            shim_log = None
        client: ShimClient | None = None
        try:
            # A dead shim's socket refuses at once; a hung one must not hold up start-up.
            client = await asyncio.wait_for(
                ShimClient.connect(Bootstrap(address, protocol, version), bundle.namespace), RESTORE_TIMEOUT
            )
            state = await client.call(
                "State", shim_pb2.StateRequest(id=bundle.id), shim_pb2.StateResponse, RESTORE_TIMEOUT
            )
        except Exception as exc:
            log.warning("shim for %s/%s is gone: %s", bundle.namespace, bundle.id, exc)
            if client is not None:
                await client.close()
            dead = ShimTask(bundle, ShimClient(_Closed(), bundle.namespace, version), binary, runtime, shim_log)
            await self._cleanup_dead(dead)
            if shim_log is not None:
                shim_log.close()
            bundle.delete()
            return
        task = ShimTask(bundle, client, binary, runtime, shim_log, state.pid, address)
        self._tasks[(bundle.namespace, bundle.id)] = task
        self._watch(task)
        log.info("reconnected to shim", extra={"namespace": bundle.namespace, "id": bundle.id, "pid": state.pid})

    async def close(self) -> None:
        """Disconnect from every shim; shims and their containers keep running."""
        self._closing = True
        for task in self._tasks.values():
            await task.client.close()
            if task.shim_log is not None:
                task.shim_log.close()
        self._tasks.clear()


async def _shim_pid(client: ShimClient, task_id: str) -> int:
    """The shim's PID from its Connect reply, or 0."""
    try:
        reply = await client.call(
            "Connect", shim_pb2.ConnectRequest(id=task_id), shim_pb2.ConnectResponse, TEARDOWN_CALL_TIMEOUT
        )
    except ContainerdError:
        return 0
    return int(reply.shim_pid)


async def _reap_shim(pid: int, timeout: float) -> None:  # noqa: ASYNC109
    """Wait up to ``timeout`` for the shim ``pid`` to exit, then kill it.

    Through a pidfd: the shim is not our child, and its PID could be reused once it exits.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await asyncio.wait_for(exited, timeout)
    except TimeoutError:
        log.warning("shim %d did not exit after shutdown, killing it", pid)
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


class _Closed:
    async def call(self, *args: object, **kwargs: object) -> None:
        raise Unavailable("shim is gone")

    async def close(self) -> None:
        return None
