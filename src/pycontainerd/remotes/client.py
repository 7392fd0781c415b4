"""The registry client: resolve a reference, then fetch from or push to its repository.

``RegistryClient`` owns the HTTP session, the authorizer and the concurrency limits; the hosts of
a registry are read from ``config_path`` at each call (like containerd, edits need no restart).
:meth:`RegistryClient.fetcher` and :meth:`RegistryClient.pusher` bind it to one repository.

Resolving a tag asks only hosts with the ``resolve`` capability (a mirror without it is never
trusted with tag -> digest); resolving a digest needs ``pull`` only. Each host is asked
``HEAD /v2/<name>/manifests/<tag|digest>``; without ``Docker-Content-Digest`` or a length the
manifest is fetched and hashed. A digest reference the registry does not know as a manifest is
tried as a blob, as containerd does for legacy registries.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor
from pycontainerd.errdefs import (
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)
from pycontainerd.images.manifest import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, OCI_INDEX, OCI_MANIFEST
from pycontainerd.remotes.auth import repository_scope
from pycontainerd.remotes.fetcher import Fetcher
from pycontainerd.remotes.hosts import Capability, RegistryHost, TLSSettings, configure_hosts
from pycontainerd.remotes.limits import Limits
from pycontainerd.remotes.pusher import Pusher
from pycontainerd.remotes.reference import Reference, parse_reference
from pycontainerd.remotes.transport import USER_AGENT, RetryPolicy, Transport, response_error

if TYPE_CHECKING:
    import os
    from types import TracebackType

    import aiohttp

    from pycontainerd.remotes.credentials import CredentialsFn

log = logging.getLogger(__name__)

MAX_MANIFEST_SIZE = 4 << 20
"""Largest manifest a resolve accepts (containerd's ``MaxManifestSize``)."""

MANIFEST_ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"))

HostsFn = Callable[[str], list[RegistryHost]]
"""Registry domain -> endpoints to try, in order."""


def _media_type(resp: aiohttp.ClientResponse) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip()


class RegistryClient:
    """A client of OCI distribution registries.

    Args:
        config_path: directory of ``<host>/hosts.toml`` files (containerd's ``config_path``).
        default_scheme: scheme of a registry without configuration ("" for containerd's rule).
        default_tls: TLS settings added to every host.
        hosts: replaces the ``hosts.toml`` lookup altogether.
        credentials: host -> :class:`~pycontainerd.remotes.credentials.Credentials`.
        headers: extra headers on every request.
        limits: concurrency limits, shareable between clients.
        retry: retry policy for requests and resumed downloads.
        connect_timeout: seconds to connect (a host's ``dial_timeout`` wins).
        read_timeout: seconds of silence after which a connection counts as dropped.
        trust_env: honour proxy environment variables.
        user_agent: ``User-Agent`` header.
    """

    def __init__(
        self,
        *,
        config_path: str | os.PathLike[str] = "",
        default_scheme: str = "",
        default_tls: TLSSettings | None = None,
        hosts: HostsFn | None = None,
        credentials: CredentialsFn | None = None,
        headers: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        trust_env: bool = True,
        user_agent: str = USER_AGENT,
    ) -> None:
        if default_scheme not in ("", "http", "https"):
            raise InvalidArgument(f"invalid default scheme {default_scheme!r}")
        self._config_path = config_path
        self._default_scheme = default_scheme
        self._default_tls = default_tls
        self._hosts_fn = hosts
        self.limits = limits or Limits()
        self.transport = Transport(
            credentials=credentials,
            retry=retry,
            headers=headers,
            user_agent=user_agent,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            trust_env=trust_env,
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection."""
        await self.transport.close()

    def hosts(self, domain: str) -> list[RegistryHost]:
        """The endpoints for registry ``domain``, in the order they are tried."""
        if self._hosts_fn is not None:
            return self._hosts_fn(domain)
        return configure_hosts(
            domain,
            config_path=self._config_path,
            default_scheme=self._default_scheme,
            default_tls=self._default_tls,
        )

    def fetcher(self, ref: str | Reference) -> Fetcher:
        """A fetcher for the repository of ``ref``."""
        r = parse_reference(ref) if isinstance(ref, str) else ref
        return Fetcher(self.transport, self.hosts(r.domain), r, self.limits)

    def pusher(self, ref: str | Reference) -> Pusher:
        """A pusher to the repository of ``ref`` (NotFound when no host may be pushed to)."""
        r = parse_reference(ref) if isinstance(ref, str) else ref
        return Pusher(self.transport, self.hosts(r.domain), r, self.limits)

    async def resolve(self, ref: str | Reference) -> tuple[str, Descriptor]:
        """The descriptor of the manifest or index ``ref`` names.

        Returns:
            ``(normalized reference, descriptor)``.

        Raises:
            InvalidArgument: a malformed reference.
            NotFound: no host knows it (or none may resolve).
            PermissionDenied: pull access denied (the repository may not exist, or need credentials).
            Unavailable: no host could be reached.
            Unimplemented: a schema 1 manifest.
        """
        r = parse_reference(ref) if isinstance(ref, str) else ref
        if r.digest:
            paths = [f"manifests/{r.digest}", f"blobs/{r.digest}"]
            needed = Capability.PULL
        else:
            paths = [f"manifests/{r.tag}"]
            needed = Capability.PULL | Capability.RESOLVE
        hosts = [h for h in self.hosts(r.domain) if h.can(needed)]
        if not hosts:
            raise NotFound(f"no resolve hosts for {r.domain}")
        first: ContainerdError | None = None
        priority = 0

        def keep(err: ContainerdError, rank: int) -> None:
            # The error that got furthest wins: refused < not found < other status < too large.
            nonlocal first, priority
            if rank > priority:
                first, priority = err, rank

        for path in paths:
            # The blobs fallback is only for a 404 on manifests, never after other failures.
            if priority > 2:
                break
            for i, host in enumerate(hosts):
                url = self.transport.url(host, f"{r.path}/{path}", registry=r.domain)
                try:
                    desc = await self._resolve_on(host, url, r, last_host=i == len(hosts) - 1)
                except PermissionDenied as exc:
                    keep(
                        PermissionDenied(
                            f"pull access denied, repository does not exist or may require authorization: {exc.message}"
                        ),
                        1,
                    )
                except Unavailable as exc:
                    keep(exc, 1)
                except NotFound:
                    keep(NotFound(f"{r}: not found"), 2)
                except _TooLarge as exc:
                    keep(NotFound(str(exc)), 4)
                except (InvalidArgument, FailedPrecondition, Unimplemented) as exc:
                    keep(exc, 3)
                else:
                    log.debug("resolved %s to %s on %s", r, desc.digest, host.host)
                    return str(r), desc
        raise first if first is not None else NotFound(f"{r}: not found")

    async def _resolve_on(self, host: RegistryHost, url: str, ref: Reference, *, last_host: bool) -> Descriptor:
        headers = {"Accept": MANIFEST_ACCEPT}
        resp = await self.transport.request(
            host, "HEAD", url, scopes=[repository_scope(ref.path)], headers=headers, last_host=last_host
        )
        if resp.status >= 300:
            raise await response_error(f"resolve {ref} on {host.host}", resp)
        resp.release()
        size = resp.content_length if resp.method == "HEAD" else None
        media_type = _media_type(resp)
        digest = ref.digest
        if not digest and size is not None:
            header = resp.headers.get("Docker-Content-Digest", "")
            if header:
                try:
                    digest = parse_digest(header)
                except InvalidArgument as exc:
                    raise InvalidArgument(f"{header!r} in header not a valid digest") from exc
        if not digest or size is None:
            log.debug("no Docker-Content-Digest from %s, fetching the manifest instead", host.host)
            resp = await self.transport.request(
                host, "GET", url, scopes=[repository_scope(ref.path)], headers=headers, last_host=True
            )
            if resp.status >= 300:
                raise await response_error(f"resolve {ref} on {host.host}", resp)
            try:
                body = await resp.content.read(MAX_MANIFEST_SIZE + 1)
            finally:
                resp.release()
            if len(body) > MAX_MANIFEST_SIZE:
                raise _TooLarge(f"rejecting manifest larger than {MAX_MANIFEST_SIZE} bytes for {ref}")
            media_type = _media_type(resp) or media_type
            if media_type in DOCKER_SCHEMA1:
                raise Unimplemented(f"media type {media_type!r} is no longer supported; rebuild the image as OCI")
            computed = "sha256:" + hashlib.sha256(body).hexdigest()
            if digest and digest.startswith("sha256:") and computed != digest:
                raise FailedPrecondition(f"{host.host} served {computed} for {digest}")
            digest = digest or computed
            size = len(body)
            if media_type in ("", "application/octet-stream"):
                media_type = _sniff_media_type(body) or media_type
        if media_type in DOCKER_SCHEMA1:
            raise Unimplemented(f"media type {media_type!r} is no longer supported; rebuild the image as OCI")
        if size > MAX_MANIFEST_SIZE:
            raise _TooLarge(f"rejecting {size} byte manifest for {ref}")
        return Descriptor(media_type, digest, size)


class _TooLarge(Exception):
    """A manifest over :data:`MAX_MANIFEST_SIZE`."""


def _sniff_media_type(body: bytes) -> str:
    """The ``mediaType`` field of a manifest body served without a useful Content-Type."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    value = data.get("mediaType") if isinstance(data, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(data, dict) and "manifests" in data:
        return OCI_INDEX
    if isinstance(data, dict) and "layers" in data:
        return OCI_MANIFEST
    return ""
