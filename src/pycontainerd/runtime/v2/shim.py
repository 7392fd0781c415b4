"""Starting, reaching and cleaning up runtime v2 shim processes.

Facts of the protocol (measured against Debian's containerd-shim-runc-v2):

* ``<shim> -namespace NS -address GRPC -publish-binary BIN -id ID start`` runs in the bundle
  directory with ``TTRPC_ADDRESS``, ``GRPC_ADDRESS``, ``NAMESPACE`` and ``MAX_SHIM_VERSION``
  in its environment and the runtime options (a serialized ``Any``) on stdin; it prints
  its address (plain ``unix://...`` or bootstrap JSON) and exits, leaving the real shim
  running, detached.
* The shim writes its logs to the ``log`` FIFO in the bundle: somebody must hold its read
  end, or the shim blocks and dies.
* ``... -bundle PATH delete`` cleans up after a shim that died and prints a serialized
  ``DeleteResponse``.
* The bootstrap names the protocol: ``ttrpc`` (a bare address means ttrpc, Task API v2) or
  ``grpc`` (containerd 2.x; Task API v3, address a plain socket path). Both are served by
  :class:`ShimClient`, which hides the difference from the task manager.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from pycontainerd.namespaces import GRPC_NAMESPACE_HEADER, TTRPC_NAMESPACE_HEADER

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from pycontainerd.runtime.v2.bundle import Bundle

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
DELETE_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
TASK_SERVICE_V2 = "containerd.task.v2.Task"
TASK_SERVICE_V3 = "containerd.task.v3.Task"
MAX_SHIM_VERSION = 3
# Set by the task manager from a runtime's ``protocol`` config: the protocol it asks the shim to
# serve. Shims that do not know the variable ignore it; the bootstrap says what a shim serves.
PROTOCOL_ENV = "PYCONTAINERD_SHIM_PROTOCOL"


def binary_for(runtime: str) -> str:
    """The shim executable for a runtime name (``io.containerd.runc.v2`` -> ``containerd-shim-runc-v2``).

    An absolute path is used as is; a bare executable name (``containerd-shim-pyrunc-v2``) is
    looked up on PATH and next to the interpreter.
    """
    if os.path.isabs(runtime):
        return runtime
    if runtime.startswith("containerd-shim-"):
        found = shutil.which(runtime) or shutil.which(runtime, path=os.path.dirname(sys.executable))
        if found is None:
            raise NotFound(f"shim binary {runtime!r} not installed")
        return found
    parts = runtime.split(".")
    if len(parts) < 2:
        raise InvalidArgument(
            f"invalid runtime name {runtime}, correct runtime name should be format like io.containerd.runc.v1"
        )
    name = f"containerd-shim-{parts[-2]}-{parts[-1]}"
    # Our own shim is installed next to the interpreter (a virtualenv's bin/), maybe not on PATH.
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        raise NotFound(f"runtime {runtime!r} binary not installed {name!r}")
    return found


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """How to reach a started shim."""

    address: str
    protocol: str = "ttrpc"
    version: int = 2

    @property
    def socket_path(self) -> str:
        """The unix socket path inside ``address``."""
        addr = self.address
        for prefix in ("ttrpc+unix://", "grpc+unix://", "unix://"):
            if addr.startswith(prefix):
                return addr[len(prefix) :]
        return addr


def parse_start_output(out: bytes) -> Bootstrap:
    """The shim's ``start`` output: bootstrap JSON (containerd 2.x) or a bare address.

    Raises:
        FailedPrecondition: If there is no address.
        Unimplemented: For a Task API version above :data:`MAX_SHIM_VERSION`.
    """
    text = out.decode(errors="replace").strip()
    if text.startswith("{"):
        data = json.loads(text)
        version = int(data.get("version", 2))
        if version >= 2:
            if version > MAX_SHIM_VERSION:
                raise Unimplemented(f"unsupported shim version ({version})")
            protocol = str(data.get("protocol") or "ttrpc").lower()
            return Bootstrap(str(data["address"]), protocol, version)
    if not text:
        raise FailedPrecondition("shim start printed no address")
    return Bootstrap(text.splitlines()[-1].strip())


class ShimLog:
    """Holds the read end of the bundle's ``log`` FIFO and forwards lines to our log."""

    def __init__(self, bundle: Bundle) -> None:
        self._fd = os.open(bundle.log, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._id = bundle.id
        self._task = spawn(self._pump(), name=f"shim-log-{bundle.id}")

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._fd, "rb", buffering=0)
        )
        try:
            while line := await reader.readline():
                log.debug("shim: %s", line.decode(errors="replace").rstrip(), extra={"id": self._id})
        finally:
            transport.close()

    def close(self) -> None:
        """Stop forwarding (the FIFO is closed with the transport)."""
        self._task.cancel()


def shim_env(namespace: str, grpc_address: str, ttrpc_address: str, protocol: str = "") -> dict[str, str]:
    """The environment a shim starts with (``protocol``: the one to ask it for, if any)."""
    env = dict(os.environ)
    env.pop(PROTOCOL_ENV, None)  # only ever the runtime's own choice, never the daemon's environment
    env.update(
        {
            "GOMAXPROCS": "2",
            "MAX_SHIM_VERSION": "2",
            "TTRPC_ADDRESS": ttrpc_address,
            "GRPC_ADDRESS": grpc_address,
            "NAMESPACE": namespace,
        }
    )
    if protocol:
        env[PROTOCOL_ENV] = protocol
    return env


def shim_args(
    binary: str,
    namespace: str,
    grpc_address: str,
    task_id: str,
    action: str,
    *,
    bundle: str = "",
    debug: bool = False,
    publish_binary: str = "",
) -> list[str]:
    """The command line of a shim invocation."""
    args = [
        binary,
        "-namespace",
        namespace,
        "-address",
        grpc_address,
        "-publish-binary",
        publish_binary or binary,
        "-id",
        task_id,
    ]
    if bundle:
        args += ["-bundle", bundle]
    if debug:
        args.append("-debug")
    args.append(action)
    return args


async def start_shim(
    binary: str,
    bundle: Bundle,
    *,
    grpc_address: str,
    ttrpc_address: str,
    options: bytes = b"",
    debug: bool = False,
    protocol: str = "",
) -> Bootstrap:
    """Run ``<shim> start`` for ``bundle`` and return where the shim listens (``protocol``: the
    one to ask for through :data:`PROTOCOL_ENV`; the shim's bootstrap has the last word)."""
    proc = await asyncio.create_subprocess_exec(
        *shim_args(binary, bundle.namespace, grpc_address, bundle.id, "start", debug=debug),
        cwd=bundle.path,
        env=shim_env(bundle.namespace, grpc_address, ttrpc_address, protocol),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(options), START_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FailedPrecondition(f"shim {binary} start timed out after {START_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise FailedPrecondition(
            f"start failed: {binary}: {out.decode(errors='replace').strip()}: exit status {proc.returncode}"
        )
    return parse_start_output(out)


async def delete_shim(binary: str, bundle: Bundle, *, grpc_address: str, ttrpc_address: str) -> shim_pb2.DeleteResponse:
    """Run ``<shim> ... delete`` to clean up after a dead shim."""
    proc = await asyncio.create_subprocess_exec(
        *shim_args(binary, bundle.namespace, grpc_address, bundle.id, "delete", bundle=str(bundle.path)),
        cwd=bundle.path if bundle.path.exists() else "/",
        env=shim_env(bundle.namespace, grpc_address, ttrpc_address),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DELETE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FailedPrecondition(f"shim {binary} delete timed out") from None
    if proc.returncode != 0:
        raise FailedPrecondition(f"failed to delete shim: {err.decode(errors='replace').strip()}")
    response = shim_pb2.DeleteResponse()
    response.ParseFromString(out)
    return response


class ShimClient:
    """The Task API of one shim, over ttrpc or gRPC (the bootstrap's protocol)."""

    def __init__(self, client: Any, namespace: str, version: int, protocol: str = "ttrpc") -> None:
        self._client = client
        self._namespace = namespace
        self._service = TASK_SERVICE_V3 if version >= 3 else TASK_SERVICE_V2
        self._header = GRPC_NAMESPACE_HEADER if protocol == "grpc" else TTRPC_NAMESPACE_HEADER
        self.protocol = protocol

    @classmethod
    async def connect(cls, bootstrap: Bootstrap, namespace: str) -> ShimClient:
        """Connect to a shim's socket with the protocol its bootstrap names.

        Raises:
            FailedPrecondition: For a protocol other than ttrpc and grpc.
            Unavailable: If the shim does not answer.
        """
        from pycontainerd.runtime.v2.errors import from_ttrpc

        protocol = bootstrap.protocol.lower()
        if protocol == "ttrpc":
            from pycontainerd.ttrpc.client import Client

            try:
                client: Any = await Client.connect(bootstrap.socket_path)
            except OSError as exc:
                raise from_ttrpc(exc) from exc
        elif protocol == "grpc":
            # Imported here: ttrpc-only daemons and tests never load grpc for the runtime.
            from pycontainerd.runtime.v2.grpc_client import GrpcConnection

            client = await GrpcConnection.connect(bootstrap.socket_path)
        else:
            raise FailedPrecondition(f"unsupported shim protocol {bootstrap.protocol!r} (ttrpc or grpc)")
        return cls(client, namespace, bootstrap.version, protocol)

    async def call(
        self,
        method: str,
        request: Message,
        response_cls: type[Any],
        timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109 - the timeout travels in the request
        service: str = "",
    ) -> Any:
        """One Task API call (or one of ``service``, e.g. the shim's Sandbox API); shim errors
        come back as errdefs kinds."""
        from pycontainerd.runtime.v2.errors import from_ttrpc

        try:
            return await self._client.call(
                service or self._service,
                method,
                request,
                response_cls,
                metadata={self._header: [self._namespace]},
                timeout=timeout,
            )
        except Exception as exc:
            raise from_ttrpc(exc) from exc

    async def close(self) -> None:
        """Close the connection (the shim keeps running)."""
        await self._client.close()

    async def wait_closed(self) -> str:
        """Return (with the reason) once the connection is gone, e.g. because the shim died."""
        reason: str = await self._client.wait_closed()
        return reason
