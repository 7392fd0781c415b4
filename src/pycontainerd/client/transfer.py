"""Transfers from Python: import, export, tag, pull and push through the Transfer service.

Byte streams and progress travel on client-opened ``Streaming.Stream`` calls, named with a
random ID that the transfer request refers to, as containerd's Go client does; the same
functions therefore work against containerd 2.x itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2

from pycontainerd.aio import spawn
from pycontainerd.api.containerd.services.streaming.v1 import streaming_pb2, streaming_pb2_grpc
from pycontainerd.api.containerd.services.transfer.v1 import transfer_pb2, transfer_pb2_grpc
from pycontainerd.api.containerd.types import platform_pb2
from pycontainerd.api.containerd.types.transfer import (
    imagestore_pb2,
    importexport_pb2,
    progress_pb2,
    registry_pb2,
)
from pycontainerd.api.containerd.types.transfer import streaming_pb2 as data_pb2
from pycontainerd.client.connection import Connection
from pycontainerd.client.containers import Containers
from pycontainerd.client.content import Content
from pycontainerd.client.events import Events
from pycontainerd.client.images import Images
from pycontainerd.client.introspection import Introspection
from pycontainerd.client.leases import Leases
from pycontainerd.client.namespaces import Namespaces
from pycontainerd.client.snapshots import Snapshots
from pycontainerd.client.tasks import Tasks
from pycontainerd.typeurl import name_of, pack

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from pycontainerd.api.pycontainerd.types.transfer.v1 import snapshot_pb2
    from pycontainerd.images.platforms import Platform

Secret = tuple[str, str]
"""(user, password); an empty user with a secret is an identity (refresh) token."""
Credentials = Secret | Callable[[str], "Secret | Awaitable[Secret | None] | None"]
"""Fixed credentials, or a function from registry host to credentials (or None)."""

MAX_DATA = 32 * 1024
WINDOW = 2 * MAX_DATA
ProgressFn = Callable[[progress_pb2.Progress], None]


class _Stream:
    """One client-opened stream."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, message: Message) -> None:
        await self._call.write(pack(message))

    async def recv(self) -> any_pb2.Any | None:
        reply = await self._call.read()
        if reply is grpc.aio.EOF:
            return None
        assert isinstance(reply, any_pb2.Any)
        return reply

    async def done_writing(self) -> None:
        with contextlib.suppress(grpc.aio.UsageError, grpc.aio.AioRpcError):
            await self._call.done_writing()


class Client(Connection):
    """A connection to the daemon in one namespace: every service, and transfers.

    ::

        async with Client("/run/pycontainerd/pycontainerd.sock", "default") as client:
            for container in await client.containers.list():
                print(container.id, container.image)
            await client.pull("127.0.0.1:5000/busybox:1", plain_http=True)
    """

    @property
    def containers(self) -> Containers:
        """Container records."""
        return Containers(self)

    @property
    def images(self) -> Images:
        """Image records (and image configs)."""
        return Images(self)

    @property
    def content(self) -> Content:
        """The content store."""
        return Content(self)

    def snapshots(self, snapshotter: str = "") -> Snapshots:
        """The snapshots of ``snapshotter`` (default overlayfs)."""
        return Snapshots(self, snapshotter)

    @property
    def leases(self) -> Leases:
        """Leases."""
        return Leases(self)

    @property
    def namespaces(self) -> Namespaces:
        """Namespaces (of the whole daemon)."""
        return Namespaces(self)

    @property
    def tasks(self) -> Tasks:
        """Tasks and their processes."""
        return Tasks(self)

    @property
    def events(self) -> Events:
        """The event stream."""
        return Events(self)

    @property
    def introspection(self) -> Introspection:
        """Version, server identity and plugins."""
        return Introspection(self)

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[tuple[str, _Stream]]:
        """Open a named stream; yields its name and the stream."""
        name = secrets.token_urlsafe(12)
        call = streaming_pb2_grpc.StreamingStub(self.channel()).Stream(metadata=self.metadata)
        stream = _Stream(call)
        await stream.send(streaming_pb2.StreamInit(id=name))
        await stream.recv()  # the server's acknowledgement: the name is registered
        try:
            yield name, stream
        finally:
            call.cancel()

    async def transfer(self, source: Message, destination: Message, progress: ProgressFn | None = None) -> None:
        """Run one transfer, reporting progress to ``progress``."""
        request = transfer_pb2.TransferRequest(source=pack(source), destination=pack(destination))
        stub = transfer_pb2_grpc.TransferStub(self.channel())
        if progress is None:
            await stub.Transfer(request, metadata=self.metadata)
            return
        async with self.stream() as (name, stream):
            request.options.progress_stream = name

            async def pump() -> None:
                while (message := await stream.recv()) is not None:
                    if name_of(message) == progress_pb2.Progress.DESCRIPTOR.full_name:
                        progress(progress_pb2.Progress.FromString(message.value))

            reader = spawn(pump())
            try:
                await stub.Transfer(request, metadata=self.metadata)
                with contextlib.suppress(asyncio.TimeoutError, grpc.aio.AioRpcError):
                    await asyncio.wait_for(asyncio.shield(reader), 5)
            finally:
                reader.cancel()

    # -- byte streams --------------------------------------------------------------------

    @staticmethod
    async def _send_bytes(stream: _Stream, source: IO[bytes]) -> None:
        """Send ``source`` as Data messages within the server's window credit."""
        credit = 0
        while True:
            while credit <= 0:
                message = await stream.recv()
                if message is None:
                    return
                if name_of(message) == data_pb2.WindowUpdate.DESCRIPTOR.full_name:
                    credit += data_pb2.WindowUpdate.FromString(message.value).update
            chunk = await asyncio.to_thread(source.read, min(MAX_DATA, credit))
            if not chunk:
                await stream.done_writing()
                return
            await stream.send(data_pb2.Data(data=chunk))
            credit -= len(chunk)

    @staticmethod
    async def _receive_bytes(stream: _Stream, out: IO[bytes]) -> None:
        """Write incoming Data messages to ``out``, granting window credit as it drains."""
        granted = 0
        while True:
            if granted < WINDOW:
                try:
                    await stream.send(data_pb2.WindowUpdate(update=WINDOW))
                except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                    pass  # the server has finished sending and closed the stream
                granted += WINDOW
            message = await stream.recv()
            if message is None:
                return
            if name_of(message) != data_pb2.Data.DESCRIPTOR.full_name:
                continue
            data = data_pb2.Data.FromString(message.value).data
            granted -= len(data)
            await asyncio.to_thread(out.write, data)

    # -- the transfers -------------------------------------------------------------------

    async def import_archive(
        self, source: IO[bytes], store: imagestore_pb2.ImageStore, progress: ProgressFn | None = None
    ) -> None:
        """Import an OCI or docker archive read from ``source`` into the image store."""
        async with self.stream() as (name, stream):
            sender = spawn(self._send_bytes(stream, source))
            try:
                await self.transfer(importexport_pb2.ImageImportStream(stream=name), store, progress)
            finally:
                sender.cancel()

    async def export_archive(
        self,
        out: IO[bytes],
        store: imagestore_pb2.ImageStore,
        export: importexport_pb2.ImageExportStream | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Export images named by ``store`` as an OCI archive written to ``out``."""
        async with self.stream() as (name, stream):
            receiver = spawn(self._receive_bytes(stream, out))
            request = export or importexport_pb2.ImageExportStream()
            request.stream = name
            try:
                await self.transfer(store, request, progress)
                await receiver
            finally:
                receiver.cancel()

    async def pull(
        self,
        reference: str,
        *,
        platforms: list[Platform] | None = None,
        snapshotter: str = "",
        unpack: bool = True,
        plain_http: bool = False,
        hosts_dir: str = "",
        credentials: Credentials | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Pull ``reference`` from its registry (and unpack it for each platform).

        ``platforms``: None means this host's platform (as ctr pulls); ``[]`` means every platform
        (nothing is unpacked then). ``credentials`` ((user, password), or a function of the
        registry host) are handed to the daemon when the registry asks."""
        if platforms is None:
            from pycontainerd.images.platforms import host_platform

            platforms = [host_platform()]
        wanted = [platform_to_pb(p) for p in platforms]
        store = imagestore_pb2.ImageStore(name=reference, platforms=wanted)
        if unpack:
            for p in wanted:
                store.unpacks.add(platform=p, snapshotter=snapshotter)
        async with self._auth(registry(reference, plain_http, hosts_dir), credentials) as remote:
            await self.transfer(remote, store, progress)

    async def push(
        self,
        reference: str,
        image: str = "",
        *,
        platforms: list[Platform] | None = None,
        plain_http: bool = False,
        hosts_dir: str = "",
        credentials: Credentials | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Push the local image ``image`` (default: ``reference``) to ``reference``."""
        store = imagestore_pb2.ImageStore(
            name=image or reference, platforms=[platform_to_pb(p) for p in platforms or []]
        )
        async with self._auth(registry(reference, plain_http, hosts_dir), credentials) as remote:
            await self.transfer(store, remote, progress)

    async def mirror(
        self,
        source: str,
        destination: str,
        *,
        plain_http: bool = False,
        hosts_dir: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        """Copy ``source`` to ``destination``, registry to registry, through the daemon (all platforms)."""
        await self.transfer(
            registry(source, plain_http, hosts_dir), registry(destination, plain_http, hosts_dir), progress
        )

    @contextlib.asynccontextmanager
    async def _auth(
        self, remote: registry_pb2.OCIRegistry, credentials: Credentials | None
    ) -> AsyncIterator[registry_pb2.OCIRegistry]:
        """With credentials: an auth stream that answers the daemon's ``AuthRequest`` messages."""
        if credentials is None:
            yield remote
            return
        lookup = credentials if callable(credentials) else (lambda _host: credentials)
        async with self.stream() as (name, stream):

            async def answer() -> None:
                while (message := await stream.recv()) is not None:
                    if name_of(message) != registry_pb2.AuthRequest.DESCRIPTOR.full_name:
                        continue
                    host = registry_pb2.AuthRequest.FromString(message.value).host
                    found = lookup(host)
                    if inspect.isawaitable(found):
                        found = await found
                    if found is None:
                        await stream.send(registry_pb2.AuthResponse(authType=registry_pb2.NONE))
                    else:
                        user, secret = found
                        kind = registry_pb2.REFRESH if not user and secret else registry_pb2.CREDENTIALS
                        await stream.send(registry_pb2.AuthResponse(authType=kind, username=user, secret=secret))

            responder = spawn(answer())
            remote.resolver.auth_stream = name
            try:
                yield remote
            finally:
                responder.cancel()

    async def apply_layer(
        self,
        source: IO[bytes],
        snapshot: snapshot_pb2.Snapshot,
        media_type: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        """Apply the layer read from ``source`` and commit it as ``snapshot.key`` (pycontainerd only)."""
        async with self.stream() as (name, stream):
            sender = spawn(self._send_bytes(stream, source))
            try:
                await self.transfer(data_pb2.ReadStream(stream=name, media_type=media_type), snapshot, progress)
            finally:
                sender.cancel()

    async def diff_layer(
        self, out: IO[bytes], snapshot: snapshot_pb2.Snapshot, media_type: str = "", progress: ProgressFn | None = None
    ) -> None:
        """Write the layer between ``snapshot.parent`` and ``snapshot.key`` to ``out`` (pycontainerd only)."""
        async with self.stream() as (name, stream):
            receiver = spawn(self._receive_bytes(stream, out))
            try:
                await self.transfer(snapshot, data_pb2.WriteStream(stream=name, media_type=media_type), progress)
                await receiver
            finally:
                receiver.cancel()

    async def tag(self, source: str, *destinations: str) -> None:
        """Give the image ``source`` more names."""
        store = imagestore_pb2.ImageStore(
            extra_references=[imagestore_pb2.ImageReference(name=d) for d in destinations[1:]],
            name=destinations[0],
        )
        await self.transfer(imagestore_pb2.ImageStore(name=source), store)


def registry(reference: str, plain_http: bool = False, hosts_dir: str = "") -> registry_pb2.OCIRegistry:
    """The ``OCIRegistry`` message for ``reference`` (``plain_http``: talk HTTP, not HTTPS)."""
    return registry_pb2.OCIRegistry(
        reference=reference,
        resolver=registry_pb2.RegistryResolver(host_dir=hosts_dir, default_scheme="http" if plain_http else ""),
    )


def platform_to_pb(p: Platform) -> platform_pb2.Platform:
    """Core platform to protobuf."""
    return platform_pb2.Platform(os=p.os, architecture=p.architecture, variant=p.variant)
