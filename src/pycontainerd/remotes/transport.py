"""One HTTP request to a registry endpoint: TLS, authorization, redirects, fallbacks and retries.

Everything above this module speaks in registry paths and descriptors; everything about
connections is here. A request:

1. goes to ``host.base_url + path`` (or an absolute URL from a ``Location``), with the host's
   extra headers, ``?ns=<registry>`` when the host is a mirror, and the ``Authorization`` the
   :class:`~pycontainerd.remotes.auth.Authorizer` knows for the URL's host;
2. on a 401, lets the authorizer learn the challenge and is sent once more; a second refusal is
   ``PermissionDenied``;
3. on a TLS failure of a host marked ``http_fallback`` (the server speaks plain HTTP), is sent
   again over ``http``, and that host stays on ``http``;
4. on 408/429/5xx (only from the last host to try, so a broken mirror is skipped instead) or a
   connection error, is retried with exponential back-off, ``Retry-After`` honoured;
5. follows redirects itself, so credentials never leave for another host.

Bodies are produced by a factory so that every retry sends them from the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict

from pycontainerd import __version__
from pycontainerd.errdefs import (
    Conflict,
    ContainerdError,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    Unknown,
)
from pycontainerd.remotes.auth import Authorizer, parse_www_authenticate
from pycontainerd.remotes.hosts import RegistryHost, TLSSettings, split_port, ssl_context

if TYPE_CHECKING:
    from pycontainerd.remotes.credentials import CredentialsFn

log = logging.getLogger(__name__)

USER_AGENT = f"pycontainerd/{__version__}"
RETRY_STATUSES = frozenset({408, 429})
SERVER_STATUSES = frozenset({500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10

Body = bytes | AsyncIterable[bytes] | None
BodyFactory = Callable[[], Body]
"""Makes a request body afresh for each attempt."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        attempts: tries per request (and consecutive failed resumes of one download), at least 1.
        base_delay: seconds before the first retry; doubled each time.
        max_delay: cap of one wait, also of a server's ``Retry-After``.
        jitter: fraction of each wait drawn at random, so parallel pulls do not retry in step.
    """

    attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 10.0
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        wait = min(self.base_delay * (2**attempt), self.max_delay)
        return float(wait * (1 - self.jitter * random.random()))


@dataclass(slots=True)
class RegistryErrorDetail:
    """One entry of a registry's ``{"errors": [...]}`` body."""

    code: str
    message: str
    detail: Any = None


@dataclass(slots=True)
class ResponseError:
    """What an unexpected response said: status, registry error codes, a short body."""

    status: int
    reason: str
    errors: list[RegistryErrorDetail] = field(default_factory=list)
    body: str = ""

    def describe(self) -> str:
        """``status reason: CODE: message; ...``."""
        text = f"{self.status} {self.reason}".strip()
        if self.errors:
            text += ": " + "; ".join(f"{e.code}: {e.message}" if e.message else e.code for e in self.errors)
        elif self.body:
            text += ": " + self.body
        return text


def parse_error_body(status: int, reason: str, body: bytes) -> ResponseError:
    """Read the distribution spec's error body, if there is one."""
    out = ResponseError(status, reason)
    try:
        data = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        for item in data["errors"]:
            if isinstance(item, dict):
                out.errors.append(
                    RegistryErrorDetail(str(item.get("code", "")), str(item.get("message", "")), item.get("detail"))
                )
    elif body:
        out.body = body[:200].decode(errors="replace").strip()
    return out


def status_error(what: str, err: ResponseError) -> ContainerdError:
    """The error kind of an unexpected status (``what`` says which request)."""
    message = f"{what}: {err.describe()}"
    status = err.status
    if status == 404:
        return NotFound(message)
    if status in (401, 403):
        return PermissionDenied(message)
    if status == 416:
        return OutOfRange(message)
    if status == 409:
        return Conflict(message)
    if status == 429:
        return ResourceExhausted(message)
    if status in (405, 501):
        return Unimplemented(message)
    if status >= 500:
        return Unavailable(message)
    if 400 <= status < 500:
        return InvalidArgument(message)
    return Unknown(message)


async def response_error(what: str, resp: aiohttp.ClientResponse) -> ContainerdError:
    """Read (a bounded part of) an unexpected response's body, release it, return its error kind."""
    try:
        body = await resp.content.read(64 * 1024) if resp.method != "HEAD" else b""
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    finally:
        resp.release()
    return status_error(what, parse_error_body(resp.status, resp.reason or "", body))


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: use our own back-off


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a transport failure worth retrying (not a protocol or TLS-trust error)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return False
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | ConnectionError)


def _is_plain_http_answer(exc: BaseException) -> bool:
    """A TLS handshake that failed because the server speaks plain HTTP (containerd's HTTP fallback)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return False
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return True
    cause = getattr(exc, "os_error", None) or exc.__cause__
    return isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLCertVerificationError)


class Transport:
    """An aiohttp session plus everything a registry request needs; one per client.

    Args:
        credentials: host -> credentials, for the authorizer.
        retry: retry policy.
        headers: extra headers on every request (under the hosts' own).
        user_agent: the ``User-Agent`` header.
        connect_timeout: seconds to connect when a host sets no ``dial_timeout``.
        read_timeout: seconds without a byte before a connection counts as dropped.
        trust_env: honour ``HTTP(S)_PROXY``/``NO_PROXY`` like containerd.
    """

    def __init__(
        self,
        *,
        credentials: CredentialsFn | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str = USER_AGENT,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        trust_env: bool = True,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.authorizer = Authorizer(self, credentials)
        self._headers = dict(headers or {})
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[TLSSettings, ssl.SSLContext] = {}
        self._plain_http: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # Blobs are hashed as stored: never let the client decode a Content-Encoding.
                auto_decompress=False,
                trust_env=self._trust_env,
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=16),
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
            )
        return self._session

    async def close(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- helpers ---------------------------------------------------------------------------------

    def ssl_for(self, tls: TLSSettings) -> ssl.SSLContext:
        """The (cached) SSL context of ``tls``."""
        ctx = self._ssl.get(tls)
        if ctx is None:
            ctx = self._ssl[tls] = ssl_context(tls)
        return ctx

    def url(self, host: RegistryHost, path: str, *, registry: str = "", query: Sequence[tuple[str, str]] = ()) -> str:
        """The URL of ``path`` (relative to the API root, or absolute) on ``host``.

        ``registry`` is the registry the request is for: a mirror gets it as ``?ns=``.
        """
        base = path if "://" in path else host.base_url + "/" + path.lstrip("/")
        params = list(query)
        if registry and host.is_mirror_for(registry):
            params.append(("ns", registry))
        if not params:
            return base
        parts = urlsplit(base)
        extra = urlencode(params)
        return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))

    def _effective(self, host: RegistryHost, url: str) -> str:
        """``url`` with ``http`` when ``host`` already fell back to plain HTTP."""
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.netloc in self._plain_http:
            return urlunsplit(parts._replace(scheme="http"))
        return url

    def _ssl_param(self, host: RegistryHost, url: str) -> ssl.SSLContext | bool:
        parts = urlsplit(url)
        if parts.scheme != "https":
            return False
        if parts.netloc == host.host:
            return self.ssl_for(host.tls)
        return True  # another host (a redirect to a CDN): system trust

    def _timeout(self, host: RegistryHost) -> aiohttp.ClientTimeout:
        connect = host.dial_timeout if host.dial_timeout is not None else self._connect_timeout
        return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=self._read_timeout)

    # -- sending ---------------------------------------------------------------------------------

    async def _send_once(
        self, host: RegistryHost, method: str, url: str, headers: CIMultiDict[str], body: Body
    ) -> aiohttp.ClientResponse:
        """One request, with the plain-HTTP fallback of ``host``."""
        session = self._get_session()
        target = self._effective(host, url)
        try:
            return await session.request(
                method,
                target,
                headers=headers,
                data=body,
                ssl=self._ssl_param(host, target),
                allow_redirects=False,
                timeout=self._timeout(host),
            )
        except aiohttp.ClientError as exc:
            parts = urlsplit(target)
            fallback = host.http_fallback and parts.scheme == "https" and parts.netloc == host.host
            if not fallback:
                raise
            refused = isinstance(exc, aiohttp.ClientConnectorError) and not split_port(host.host)[1]
            if not (_is_plain_http_answer(exc) or refused):
                raise
            log.info("%s does not speak TLS, falling back to plain HTTP", host.host)
            self._plain_http.add(parts.netloc)
        # The body factory has not been consumed: the TLS handshake failed before any byte was sent.
        return await session.request(
            method,
            self._effective(host, url),
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=self._timeout(host),
        )

    async def _send(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: BodyFactory | None,
        scopes: Sequence[str],
    ) -> aiohttp.ClientResponse:
        """Send, following redirects; authorization is recomputed for each host on the way."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._send_once(host, method, url, headers, body() if body else None)
            location = resp.headers.get("Location", "")
            if resp.status not in REDIRECTS or not location or method in ("POST", "PATCH", "PUT"):
                # Upload endpoints answer with Location headers that are not redirects.
                return resp
            resp.release()
            new_url = urljoin(str(resp.url), location)
            if resp.status == 303:
                method, body = ("GET" if method != "HEAD" else method), None
            headers = CIMultiDict(headers)
            headers.popall("Authorization", None)
            auth = await self.authorizer.authorization(urlsplit(new_url).netloc, scopes)
            if auth:
                headers["Authorization"] = auth
            url = new_url
        raise Unavailable(f"{method} {url}: stopped after {MAX_REDIRECTS} redirects")

    async def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        body: BodyFactory | None = None,
        last_host: bool = True,
        retry_connection: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request and return its response (the caller releases it).

        Args:
            host: the endpoint (TLS settings, headers, fallback).
            method: HTTP method.
            url: absolute URL (see :meth:`url`).
            scopes: token scopes the request needs.
            headers: request headers.
            body: makes the body for each attempt.
            last_host: whether no other host will be tried after this one (5xx are retried only then).
            retry_connection: retry connection errors (False when the caller resumes by itself).

        Raises:
            PermissionDenied: the registry refused the credentials, or asked for some and there are none.
            Unavailable: the host could not be reached, after retries.
        """
        attempt = 0
        reauthorized = False
        netloc = urlsplit(url).netloc
        while True:
            hdrs: CIMultiDict[str] = CIMultiDict(self._headers)
            for key, values in host.headers.items():
                hdrs.popall(key, None)
                for value in values:
                    hdrs.add(key, value)
            for key, value in (headers or {}).items():
                hdrs[key] = value
            auth = await self.authorizer.authorization(netloc, scopes)
            if auth:
                hdrs["Authorization"] = auth
            try:
                resp = await self._send(host, method, url, hdrs, body, scopes)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if retry_connection and last_host and is_connection_error(exc) and attempt + 1 < self.retry.attempts:
                    wait = self.retry.delay(attempt)
                    log.debug("%s %s: %s; retrying in %.2fs", method, url, exc, wait)
                    attempt += 1
                    await asyncio.sleep(wait)
                    continue
                raise Unavailable(f"{method} {url}: {exc or type(exc).__name__}") from exc
            if resp.status == 401:
                challenges = parse_www_authenticate(resp.headers.getall("WWW-Authenticate", []))
                if reauthorized:
                    raise await response_error(f"{method} {url}: authorization failed", resp)
                resp.release()
                if not await self.authorizer.challenge(host, netloc, challenges, rejected=auth is not None):
                    raise PermissionDenied(f"{method} {url}: authorization failed: {resp.status} {resp.reason}")
                reauthorized = True
                continue
            if resp.status == 405 and method == "HEAD" and "/manifests/" in url:
                # Some registries do not implement HEAD on manifests.
                resp.release()
                method = "GET"
                continue
            retryable = resp.status in RETRY_STATUSES or (resp.status in SERVER_STATUSES and last_host)
            if retryable and attempt + 1 < self.retry.attempts:
                wait = self.retry.delay(attempt, _retry_after(resp))
                log.debug("%s %s: %d; retrying in %.2fs", method, url, resp.status, wait)
                resp.release()
                attempt += 1
                await asyncio.sleep(wait)
                continue
            return resp

    async def token_request(
        self,
        origin: RegistryHost,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]] = (),
        form: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """A request to a token server (no authorization of ours, retried on connection errors)."""
        if params:
            parts = urlsplit(url)
            extra = urlencode(list(params))
            url = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
        data = urlencode(dict(form)).encode() if form is not None else None
        hdrs: CIMultiDict[str] = CIMultiDict(self._headers)
        hdrs.update(headers)
        for attempt in range(self.retry.attempts):
            try:
                resp = await self._send_once(origin, method, url, hdrs, data)
                try:
                    return resp.status, await resp.read()
                finally:
                    resp.release()
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if not is_connection_error(exc) or attempt + 1 >= self.retry.attempts:
                    raise Unavailable(f"token request {url}: {exc or type(exc).__name__}") from exc
                await asyncio.sleep(self.retry.delay(attempt))
        raise Unavailable(f"token request {url}: no attempt made")
