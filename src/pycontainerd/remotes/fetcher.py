"""Fetching blobs and manifests by descriptor, resuming where a dropped connection left off.

A download never starts over because a connection broke: the next request asks for
``Range: bytes=<received>-`` from the same host (a server that ignores the range is read past
the bytes already held). Consecutive failures without progress are bounded by the retry policy.
Size and digest are checked at the end; bytes beyond the descriptor's size are refused at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import TYPE_CHECKING, Protocol, TypeVar

import aiohttp

from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, OutOfRange, Unavailable
from pycontainerd.images.manifest import DOCKER_SCHEMA1, INDEXES, MANIFESTS
from pycontainerd.remotes.auth import repository_scope
from pycontainerd.remotes.hosts import Capability
from pycontainerd.remotes.transport import response_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence

    from pycontainerd.core.images import Descriptor
    from pycontainerd.remotes.hosts import RegistryHost
    from pycontainerd.remotes.limits import Limits, ProgressFn
    from pycontainerd.remotes.reference import Reference
    from pycontainerd.remotes.transport import Transport

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 256 * 1024
MANIFEST_TYPES = frozenset((*MANIFESTS, *INDEXES, *DOCKER_SCHEMA1))


class IngestWriter(Protocol):
    """What :meth:`Fetcher.fetch_into` needs of a content-store writer (``metadata.content.NamespacedWriter``).

    ``write``, ``truncate`` and ``commit`` may also be coroutines (a writer over gRPC).
    """

    @property
    def offset(self) -> int:
        """Bytes already held (an interrupted earlier ingest leaves a prefix)."""
        ...

    def digest(self) -> str:
        """Digest of the bytes held so far."""
        ...

    def write(self, data: bytes) -> Awaitable[None] | None:
        """Append bytes."""
        ...

    def truncate(self, size: int) -> Awaitable[None] | None:
        """Drop everything after ``size`` bytes."""
        ...

    def commit(self, size: int, expected: str, commit_labels: Mapping[str, str] | None = None) -> str | Awaitable[str]:
        """Verify and store the blob; returns its digest."""
        ...


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


def _hasher(digest: str) -> hashlib._Hash:
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise InvalidArgument(f"unsupported digest algorithm in {digest!r}")
    return hashlib.new(algorithm)


class _ShortRead(Exception):
    """The response ended before the descriptor's size (a connection cut without an error)."""


_DROPS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError, ConnectionError, _ShortRead)


class Fetcher:
    """Reads the blobs and manifests of one repository.

    Made by :meth:`pycontainerd.remotes.client.RegistryClient.fetcher`.
    """

    def __init__(
        self,
        transport: Transport,
        hosts: Sequence[RegistryHost],
        ref: Reference,
        limits: Limits,
        *,
        chunk_size: int = READ_CHUNK,
    ) -> None:
        self._transport = transport
        self._hosts = [h for h in hosts if h.can(Capability.PULL)]
        self.ref = ref
        self._limits = limits
        self._chunk_size = chunk_size
        self._scopes = [repository_scope(ref.path)]

    def _url(self, host: RegistryHost, desc: Descriptor) -> str:
        kind = "manifests" if desc.media_type in MANIFEST_TYPES else "blobs"
        return self._transport.url(host, f"{self.ref.path}/{kind}/{desc.digest}", registry=self.ref.domain)

    async def _open(self, host: RegistryHost, desc: Descriptor, pos: int, *, last_host: bool) -> aiohttp.ClientResponse:
        """A response whose body starts at byte ``pos`` of the blob."""
        headers = {"Accept": f"{desc.media_type}, */*" if desc.media_type else "*/*"}
        if pos:
            headers["Range"] = f"bytes={pos}-"
        url = self._url(host, desc)
        resp = await self._transport.request(
            host, "GET", url, scopes=self._scopes, headers=headers, last_host=last_host
        )
        if resp.status not in (200, 206):
            raise await response_error(f"fetch {desc.digest} from {host.host}", resp)
        if pos and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {pos}-"):
                resp.release()
                raise Unavailable(f"fetch {desc.digest}: unexpected Content-Range {content_range!r} for offset {pos}")
        elif pos:
            # The server ignored the range: read past what is already held.
            log.debug("%s ignored Range, skipping %d bytes", host.host, pos)
            skipped = 0
            try:
                while skipped < pos:
                    data = await resp.content.read(min(pos - skipped, READ_CHUNK))
                    if not data:
                        raise _ShortRead(f"body ended after {skipped} of {pos} bytes to skip")
                    skipped += len(data)
            except BaseException:
                resp.release()
                raise
        return resp

    async def _open_first(self, desc: Descriptor, pos: int) -> tuple[aiohttp.ClientResponse, RegistryHost]:
        """Try the pull hosts in order; the first that serves the blob keeps serving it."""
        if not self._hosts:
            raise NotFound(f"no pull hosts for {self.ref.domain}")
        first: Exception | None = None
        for i, host in enumerate(self._hosts):
            try:
                return await self._open(host, desc, pos, last_host=i == len(self._hosts) - 1), host
            except (NotFound, Unavailable, *_DROPS) as exc:
                log.debug("fetch %s from %s: %s", desc.digest, host.host, exc)
                if first is None or (isinstance(first, NotFound) and not isinstance(exc, NotFound)):
                    first = exc
        assert first is not None
        if isinstance(first, NotFound):
            raise NotFound(f"could not fetch content {desc.digest} ({desc.media_type}) from remote: not found")
        if isinstance(first, Unavailable):
            raise first
        raise Unavailable(f"fetch {desc.digest}: {first}") from first

    async def _stream(self, desc: Descriptor, start: int) -> AsyncIterator[bytes]:
        """The bytes of ``desc`` from ``start`` to its end, resuming after dropped connections."""
        size = desc.size
        if start > size:
            raise OutOfRange(f"offset {start} beyond size {size} of {desc.digest}")
        pos = start
        host: RegistryHost | None = None
        failures, failed_at = 0, -1
        retry = self._transport.retry
        while pos < size:
            resp: aiohttp.ClientResponse | None = None
            try:
                if host is None:
                    resp, host = await self._open_first(desc, pos)
                else:
                    resp = await self._open(host, desc, pos, last_host=True)
                async for chunk in resp.content.iter_chunked(self._chunk_size):
                    if pos + len(chunk) > size:
                        raise FailedPrecondition(f"{desc.digest}: server sent more than the {size} bytes expected")
                    pos += len(chunk)
                    yield chunk
                if pos < size:
                    raise _ShortRead(f"response ended at byte {pos} of {size}")
            except _DROPS as exc:
                if host is None:
                    raise
                if pos > failed_at:
                    failures = 0  # progress since the last failure: a fresh budget
                failures, failed_at = failures + 1, pos
                if failures >= retry.attempts:
                    raise Unavailable(f"fetch {desc.digest}: {failures} attempts failed at byte {pos}: {exc}") from exc
                wait = retry.delay(failures - 1)
                log.info(
                    "fetch %s: connection lost at byte %d of %d (%s); resuming in %.2fs",
                    desc.digest,
                    pos,
                    size,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
            finally:
                if resp is not None:
                    resp.release()

    async def fetch(
        self, desc: Descriptor, *, offset: int = 0, progress: ProgressFn | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the content of ``desc`` (from ``offset``), holding a download slot meanwhile.

        Size is always verified; the digest too when reading from offset 0. Use with
        ``contextlib.aclosing`` when the loop may stop early.

        Raises:
            NotFound: no pull host has it.
            FailedPrecondition: the bytes do not match the descriptor.
            Unavailable: the registry could not be reached, or the download kept failing.
            PermissionDenied: authorization was refused.
        """
        hasher = _hasher(desc.digest) if offset == 0 else None
        done = offset
        async with self._limits.download():
            if progress is not None:
                progress(desc, done, desc.size)
            async for chunk in self._stream(desc, offset):
                if hasher is not None:
                    hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(desc, done, desc.size)
                yield chunk
        if done != desc.size:
            raise FailedPrecondition(f"{desc.digest}: got {done} bytes, expected {desc.size}")
        if hasher is not None:
            actual = f"{hasher.name}:{hasher.hexdigest()}"
            if actual != desc.digest:
                raise FailedPrecondition(f"unexpected digest {actual}, expected {desc.digest}")

    async def read(self, desc: Descriptor, *, progress: ProgressFn | None = None) -> bytes:
        """The whole content of ``desc`` in memory (manifests, configs), verified."""
        parts = [chunk async for chunk in self.fetch(desc, progress=progress)]
        return b"".join(parts)

    async def fetch_into(
        self,
        writer: IngestWriter,
        desc: Descriptor,
        *,
        progress: ProgressFn | None = None,
        commit_labels: Mapping[str, str] | None = None,
    ) -> str:
        """Download ``desc`` into ``writer``, continuing after what it already holds, then commit.

        If the held prefix turns out not to belong to the blob (digest mismatch at the end),
        the writer is truncated and the blob fetched once more from the start.

        Returns:
            the committed digest (``AlreadyExists`` at commit counts as success).

        Raises:
            FailedPrecondition: the content does not match ``desc``.
            the errors of :meth:`fetch`.
        """
        async with self._limits.download():
            for attempt in range(2):
                start = writer.offset
                if start > desc.size:
                    await _maybe_await(writer.truncate(0))
                    start = 0
                done = start
                if progress is not None:
                    progress(desc, done, desc.size)
                async for chunk in self._stream(desc, start):
                    await _maybe_await(writer.write(chunk))
                    done += len(chunk)
                    if progress is not None:
                        progress(desc, done, desc.size)
                actual = writer.digest()
                comparable = actual.partition(":")[0] == desc.digest.partition(":")[0]
                if writer.offset == desc.size and (actual == desc.digest or not comparable):
                    break
                if start == 0 or attempt == 1:
                    raise FailedPrecondition(
                        f"unexpected digest {actual} ({writer.offset} bytes), expected {desc.digest}"
                    )
                log.warning("ingest of %s held %d bytes that do not belong to it; fetching again", desc.digest, start)
                await _maybe_await(writer.truncate(0))
            try:
                return await _maybe_await(writer.commit(desc.size, desc.digest, commit_labels))
            except AlreadyExists:
                return desc.digest
