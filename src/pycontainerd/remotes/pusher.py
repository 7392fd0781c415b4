"""Pushing blobs and manifests to one repository.

A blob goes up in the cheapest way the registry allows:

1. ``HEAD /v2/<name>/blobs/<digest>``: already there, nothing to send;
2. ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`` for each candidate repository
   of the same registry: 201 means mounted, 202 opens an ordinary upload session instead;
3. an upload session (``POST /v2/<name>/blobs/uploads/``), then either one ``PUT <location>?digest=``
   with the whole blob (monolithic), or ``PATCH`` requests of ``chunk_size`` bytes with
   ``Content-Range: <first>-<last>``, each following the ``Location`` of the previous answer, and
   a closing ``PUT <location>?digest=`` without a body (chunked). A chunk whose request fails is
   resent from where the registry says the session stands (``GET <location>`` -> ``Range``).

Manifests and indexes are ``PUT /v2/<name>/manifests/<tag or digest>`` with their media type as
``Content-Type``. Pushes go to the first host with the push capability.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urljoin

from pycontainerd.errdefs import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unavailable,
)
from pycontainerd.remotes.auth import repository_scope
from pycontainerd.remotes.fetcher import MANIFEST_TYPES
from pycontainerd.remotes.hosts import Capability, split_port
from pycontainerd.remotes.transport import response_error

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence

    import aiohttp

    from pycontainerd.core.images import Descriptor
    from pycontainerd.remotes.hosts import RegistryHost
    from pycontainerd.remotes.limits import Limits, ProgressFn
    from pycontainerd.remotes.reference import Reference
    from pycontainerd.remotes.transport import BodyFactory, Transport

log = logging.getLogger(__name__)

DISTRIBUTION_SOURCE = "containerd.io/distribution.source"
SOURCE_CHUNK = 1 << 20
OCTET_STREAM = "application/octet-stream"


class BlobSource(Protocol):
    """Where the bytes of a blob come from; opened again (at an offset) for each retry."""

    def open(self, offset: int) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` to its end."""
        ...


@dataclass(frozen=True, slots=True)
class BytesSource:
    """A blob held in memory."""

    data: bytes
    chunk_size: int = SOURCE_CHUNK

    async def open(self, offset: int) -> AsyncIterator[bytes]:
        """The bytes from ``offset``."""
        view = memoryview(self.data)
        for pos in range(offset, len(view), self.chunk_size):
            yield bytes(view[pos : pos + self.chunk_size])


@dataclass(frozen=True, slots=True)
class FileSource:
    """A blob in a file, read in a worker thread."""

    path: str | os.PathLike[str]
    chunk_size: int = SOURCE_CHUNK

    async def open(self, offset: int) -> AsyncIterator[bytes]:
        """The bytes from ``offset``."""
        with open(self.path, "rb") as fh:  # noqa: ASYNC230 - reads go through to_thread below
            fh.seek(offset)
            while chunk := await asyncio.to_thread(fh.read, self.chunk_size):
                yield chunk


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did.

    Attributes:
        digest: the descriptor's digest.
        status: ``exists`` (nothing sent), ``mounted`` (cross-repository mount) or ``uploaded``.
        mounted_from: ``<registry>/<repo>`` the blob was mounted from.
    """

    digest: str
    status: Literal["exists", "mounted", "uploaded"]
    mounted_from: str = ""


def distribution_source_key(domain: str) -> str:
    """The annotation/label naming the repositories of ``domain`` (port dropped) that hold a blob."""
    return f"{DISTRIBUTION_SOURCE}.{split_port(domain)[0]}"


def mount_candidates(ref: Reference, annotations: Mapping[str, str]) -> list[str]:
    """Repositories of the same registry known to hold a blob, the most related one first."""
    value = annotations.get(distribution_source_key(ref.domain), "")
    target = ref.path.split("/")

    def shared(repo: str) -> int:
        n = 0
        for a, b in zip(target, repo.split("/"), strict=False):
            if a != b:
                break
            n += 1
        return n

    repos = [r for r in dict.fromkeys(value.split(",")) if r and r != ref.path]
    return sorted(repos, key=shared, reverse=True)


async def _rechunk(stream: AsyncIterator[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Chunks of exactly ``size`` bytes (the last one shorter)."""
    buf = bytearray()
    async for data in stream:
        buf += data
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _constant(data: bytes) -> BodyFactory:
    return lambda: data


class Pusher:
    """Writes blobs and manifests to one repository.

    Made by :meth:`pycontainerd.remotes.client.RegistryClient.pusher`.
    """

    def __init__(self, transport: Transport, hosts: Sequence[RegistryHost], ref: Reference, limits: Limits) -> None:
        self._transport = transport
        push_hosts = [h for h in hosts if h.can(Capability.PUSH)]
        if not push_hosts:
            raise NotFound(f"no push hosts for {ref.domain}")
        self.host = push_hosts[0]
        self.ref = ref
        self._limits = limits
        self._scopes = [repository_scope(ref.path, push=True)]

    def _url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        return self._transport.url(self.host, f"{self.ref.path}/{path}", registry=self.ref.domain, query=query)

    def _session_url(self, base: str, location: str, query: Sequence[tuple[str, str]] = ()) -> str:
        """An upload session URL from a ``Location`` header (absolute, or relative to ``base``)."""
        if not location:
            raise Unavailable("registry answered an upload request without a Location")
        url = urljoin(base, location)
        if query:
            url = self._transport.url(self.host, url, query=query)
        return url

    async def exists(self, desc: Descriptor, *, tag: str | None = None) -> bool:
        """Whether the registry already has ``desc`` (a manifest under ``tag`` when given).

        A refused check counts as "not there", so the push itself says whether it is allowed.
        """
        if desc.media_type in MANIFEST_TYPES:
            url = self._url(f"manifests/{tag or desc.digest}")
        else:
            url = self._url(f"blobs/{desc.digest}")
        headers = {"Accept": f"{desc.media_type}, */*"}
        try:
            resp = await self._transport.request(self.host, "HEAD", url, scopes=self._scopes, headers=headers)
        except PermissionDenied as exc:
            log.debug("existence check of %s refused, pushing anyway: %s", desc.digest, exc)
            return False
        if resp.status == 200:
            resp.release()
            return not tag or resp.headers.get("Docker-Content-Digest", "") == desc.digest
        if resp.status == 404:
            resp.release()
            return False
        raise await response_error(f"check {desc.digest} on {self.host.host}", resp)

    # -- blobs -----------------------------------------------------------------------------------

    async def _try_mount(self, desc: Descriptor, repo: str) -> tuple[PushResult | None, str]:
        """(result if mounted, upload session URL if the registry opened one instead)."""
        url = self._url("blobs/uploads/", [("mount", desc.digest), ("from", repo)])
        scopes = [*self._scopes, repository_scope(repo)]
        try:
            resp = await self._transport.request(self.host, "POST", url, scopes=scopes)
        except PermissionDenied as exc:
            log.debug("mount of %s from %s refused: %s", desc.digest, repo, exc)
            return None, ""
        if resp.status == 201:
            resp.release()
            return PushResult(desc.digest, "mounted", f"{self.ref.domain}/{repo}"), ""
        if resp.status == 202:
            resp.release()
            return None, self._session_url(str(resp.url), resp.headers.get("Location", ""))
        raise await response_error(f"mount {desc.digest} from {repo}", resp)

    async def _cancel(self, session: str) -> None:
        """Abandon an upload session (best effort: the registry purges stale ones anyway)."""
        try:
            resp = await self._transport.request(self.host, "DELETE", session, scopes=self._scopes)
            resp.release()
        except (Unavailable, PermissionDenied) as exc:
            log.debug("cancelling upload session %s: %s", session, exc)

    async def _start_upload(self, desc: Descriptor) -> tuple[PushResult | None, str]:
        url = self._url("blobs/uploads/")
        resp = await self._transport.request(self.host, "POST", url, scopes=self._scopes)
        if resp.status == 201:
            resp.release()
            return PushResult(desc.digest, "exists"), ""
        if resp.status not in (200, 202, 204):
            raise await response_error(f"start upload of {desc.digest}", resp)
        resp.release()
        return None, self._session_url(str(resp.url), resp.headers.get("Location", ""))

    async def push_blob(
        self,
        desc: Descriptor,
        source: BlobSource | bytes,
        *,
        mount_from: Sequence[str] = (),
        chunk_size: int = 0,
        progress: ProgressFn | None = None,
    ) -> PushResult:
        """Make the registry hold blob ``desc``.

        Args:
            desc: the blob.
            source: its bytes, or where to read them.
            mount_from: repositories of the same registry to mount from first; the
                ``containerd.io/distribution.source.<host>`` annotation of ``desc`` adds more.
            chunk_size: 0 for one monolithic PUT, else the size of each PATCH.
            progress: ``progress(desc, done, total)``.

        Raises:
            PermissionDenied: pushing is not allowed.
            FailedPrecondition: the registry computed another digest.
            Unavailable: the registry could not be reached, after retries.
        """
        src = BytesSource(source) if isinstance(source, bytes) else source
        if await self.exists(desc):
            if progress is not None:
                progress(desc, desc.size, desc.size)
            return PushResult(desc.digest, "exists")
        async with self._limits.upload():
            session = ""
            candidates = dict.fromkeys([*mount_from, *mount_candidates(self.ref, desc.annotations)])
            for repo in (r for r in candidates if r != self.ref.path):
                if session:
                    # The previous candidate did not have it; the next one may.
                    await self._cancel(session)
                result, session = await self._try_mount(desc, repo)
                if result is not None:
                    if progress is not None:
                        progress(desc, desc.size, desc.size)
                    return result
            if not session:
                result, session = await self._start_upload(desc)
                if result is not None:
                    return result
            if chunk_size > 0:
                await self._upload_chunked(desc, src, session, chunk_size, progress)
            else:
                await self._upload_monolithic(desc, src, session, progress)
        return PushResult(desc.digest, "uploaded")

    def _check_committed(self, desc: Descriptor, resp: aiohttp.ClientResponse) -> None:
        got = resp.headers.get("Docker-Content-Digest", "")
        if got and got != desc.digest:
            raise FailedPrecondition(f"registry stored {got}, expected {desc.digest}")

    async def _upload_monolithic(
        self, desc: Descriptor, src: BlobSource, session: str, progress: ProgressFn | None
    ) -> None:
        url = self._session_url(session, session, [("digest", desc.digest)])

        async def body() -> AsyncIterator[bytes]:
            done = 0
            async for chunk in src.open(0):
                done += len(chunk)
                if progress is not None:
                    progress(desc, done, desc.size)
                yield chunk

        headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(desc.size)}
        resp = await self._transport.request(self.host, "PUT", url, scopes=self._scopes, headers=headers, body=body)
        if resp.status not in (200, 201, 204):
            raise await response_error(f"upload {desc.digest}", resp)
        resp.release()
        self._check_committed(desc, resp)

    async def _session_offset(self, session: str) -> tuple[int, str]:
        """Where an upload session stands: (bytes received, its current URL)."""
        resp = await self._transport.request(self.host, "GET", session, scopes=self._scopes)
        if resp.status not in (200, 204):
            raise await response_error("upload status", resp)
        resp.release()
        received = resp.headers.get("Range", "")
        location = self._session_url(session, resp.headers.get("Location", "") or session)
        _, _, last = received.partition("-")
        return (int(last) + 1 if last.isdigit() else 0), location

    async def _upload_chunked(
        self, desc: Descriptor, src: BlobSource, session: str, chunk_size: int, progress: ProgressFn | None
    ) -> None:
        pos, failures = 0, 0
        retry = self._transport.retry
        while pos < desc.size:
            stream = _rechunk(src.open(pos), chunk_size)
            try:
                async for chunk in stream:
                    last = pos + len(chunk) - 1
                    headers = {
                        "Content-Type": OCTET_STREAM,
                        "Content-Range": f"{pos}-{last}",
                        "Content-Length": str(len(chunk)),
                    }
                    resp = await self._transport.request(
                        self.host,
                        "PATCH",
                        session,
                        scopes=self._scopes,
                        headers=headers,
                        body=_constant(chunk),
                        retry_connection=False,
                    )
                    if resp.status != 202:
                        raise await response_error(f"upload chunk {pos}-{last} of {desc.digest}", resp)
                    resp.release()
                    session = self._session_url(session, resp.headers.get("Location", "") or session)
                    pos, failures = last + 1, 0
                    if progress is not None:
                        progress(desc, pos, desc.size)
            except (Unavailable, OutOfRange) as exc:
                failures += 1
                if failures >= retry.attempts:
                    raise
                await asyncio.sleep(retry.delay(failures - 1))
                pos, session = await self._session_offset(session)
                log.info("upload of %s interrupted (%s); the registry holds %d bytes, resuming", desc.digest, exc, pos)
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        url = self._session_url(session, session, [("digest", desc.digest)])
        headers = {"Content-Type": OCTET_STREAM, "Content-Length": "0"}
        resp = await self._transport.request(self.host, "PUT", url, scopes=self._scopes, headers=headers)
        if resp.status not in (200, 201, 204):
            raise await response_error(f"finish upload of {desc.digest}", resp)
        resp.release()
        self._check_committed(desc, resp)

    # -- manifests -------------------------------------------------------------------------------

    async def push_manifest(
        self,
        desc: Descriptor,
        data: bytes,
        *,
        tag: str | None = None,
        progress: ProgressFn | None = None,
    ) -> PushResult:
        """PUT a manifest or index under ``tag`` (by its digest when None).

        Raises:
            InvalidArgument: ``data`` does not match ``desc``.
            PermissionDenied, Unavailable: as for blobs; InvalidArgument also when the registry
                rejects the manifest (an unknown blob, say).
        """
        algorithm = desc.digest.partition(":")[0]
        if algorithm not in ("sha256", "sha384", "sha512"):
            raise InvalidArgument(f"unsupported digest {desc.digest!r}")
        actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        if actual != desc.digest or len(data) != desc.size:
            raise InvalidArgument(f"manifest bytes are {actual} ({len(data)} bytes), descriptor says {desc.digest}")
        if await self.exists(desc, tag=tag):
            if progress is not None:
                progress(desc, desc.size, desc.size)
            return PushResult(desc.digest, "exists")
        url = self._url(f"manifests/{tag or desc.digest}")
        headers = {"Content-Type": desc.media_type}
        resp = await self._transport.request(
            self.host, "PUT", url, scopes=self._scopes, headers=headers, body=lambda: data
        )
        if resp.status not in (200, 201, 204):
            raise await response_error(f"push manifest {desc.digest} to {self.ref.path}", resp)
        resp.release()
        self._check_committed(desc, resp)
        if progress is not None:
            progress(desc, desc.size, desc.size)
        return PushResult(desc.digest, "uploaded")

    async def push(
        self,
        desc: Descriptor,
        source: BlobSource | bytes,
        *,
        tag: str | None = None,
        progress: ProgressFn | None = None,
        chunk_size: int = 0,
    ) -> PushResult:
        """Push ``desc`` as a manifest (``source`` must then be bytes) or as a blob."""
        if desc.media_type in MANIFEST_TYPES:
            data = b"".join([chunk async for chunk in source.open(0)]) if not isinstance(source, bytes) else source
            return await self.push_manifest(desc, data, tag=tag, progress=progress)
        return await self.push_blob(desc, source, chunk_size=chunk_size, progress=progress)
