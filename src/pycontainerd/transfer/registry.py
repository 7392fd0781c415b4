"""The registry side of a transfer: a :class:`RegistryClient` bound to the request's resolver.

``RegistryResolver`` in the request chooses the hosts directory (``host_dir``, else the
transfer plugin's ``config_path``), the scheme for registries without configuration
(``default_scheme``) and extra headers. Credentials come from the client over its
``auth_stream``: the daemon asks with an ``AuthRequest`` (host, reference, the registry's
``WWW-Authenticate``) and the client answers with an ``AuthResponse``, as containerd does; the
daemon never reads anybody's docker config on its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.types.transfer import registry_pb2
from pycontainerd.remotes.client import RegistryClient
from pycontainerd.remotes.credentials import Credentials
from pycontainerd.remotes.pusher import FileSource
from pycontainerd.remotes.reference import parse_reference
from pycontainerd.streaming.manager import EndOfStream
from pycontainerd.typeurl import name_of, pack

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pycontainerd.core.images import Descriptor
    from pycontainerd.remotes.fetcher import IngestWriter
    from pycontainerd.remotes.limits import Limits
    from pycontainerd.remotes.pusher import BlobSource
    from pycontainerd.streaming.manager import Stream
    from pycontainerd.transfer.objects import Registry

log = logging.getLogger(__name__)


class _StreamCredentials:
    """Asks the client for credentials over its auth stream (once per host)."""

    def __init__(self, stream: Stream, reference: str) -> None:
        self._stream = stream
        self._reference = reference
        self._cache: dict[str, Credentials | None] = {}
        self._lock = asyncio.Lock()  # one exchange at a time: parallel requests share the stream

    async def __call__(self, host: str) -> Credentials | None:
        async with self._lock:
            if host not in self._cache:
                self._cache[host] = await self._ask(host)
            return self._cache[host]

    async def _ask(self, host: str) -> Credentials | None:
        try:
            await self._stream.send(pack(registry_pb2.AuthRequest(host=host, reference=self._reference)))
            reply = await self._stream.recv()
        except EndOfStream:
            return None
        if name_of(reply) != registry_pb2.AuthResponse.DESCRIPTOR.full_name:
            log.warning("auth stream answered %s, not an AuthResponse", reply.type_url)
            return None
        answer = registry_pb2.AuthResponse.FromString(reply.value)
        creds: Credentials | None = None
        if answer.authType == registry_pb2.CREDENTIALS:
            creds = Credentials(username=answer.username, password=answer.secret)
        elif answer.authType == registry_pb2.REFRESH:
            creds = Credentials(username=answer.username, identity_token=answer.secret)
        return creds


class RegistrySession:
    """One repository on one registry, for a pull or a push."""

    def __init__(self, source: Registry, config_path: str, limits: Limits) -> None:
        self.reference = parse_reference(source.reference)
        credentials = _StreamCredentials(source.auth_stream, source.reference) if source.auth_stream else None
        if source.credentials is not None:
            credentials = source.credentials  # type: ignore[assignment]
        self.client = RegistryClient(
            config_path=source.host_dir or config_path,
            default_scheme=source.default_scheme,
            headers=source.headers,
            credentials=credentials,
            limits=limits,
        )

    @property
    def host(self) -> str:
        """The registry's domain as the reference names it."""
        return self.reference.domain

    @property
    def repository(self) -> str:
        """The repository path within the registry."""
        return self.reference.path

    async def resolve(self, reference: str) -> tuple[str, Descriptor]:
        return await self.client.resolve(reference)

    async def fetch_into(self, desc: Descriptor, writer: IngestWriter) -> None:
        await self.client.fetcher(self.reference).fetch_into(writer, desc)

    async def push_blob(self, desc: Descriptor, source: Path | BlobSource, mount_from: Sequence[str]) -> str:
        src = FileSource(source) if isinstance(source, os.PathLike) else source
        result = await self.client.pusher(self.reference).push_blob(desc, src, mount_from=mount_from)
        return result.status

    async def push_manifest(self, desc: Descriptor, data: bytes, tag: str = "") -> None:
        await self.client.pusher(self.reference).push_manifest(desc, data, tag=tag or None)

    async def close(self) -> None:
        await self.client.close()
