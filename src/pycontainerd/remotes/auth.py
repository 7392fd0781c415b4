"""Registry authorization: ``WWW-Authenticate`` challenges, Basic auth, and the bearer token flow.

The first request to a registry goes out bare. A 401 carries challenges; from the best one
(Bearer before Digest before Basic) the :class:`Authorizer` builds a handler for that host, and
every later request to the host is authorized up front:

- Basic: ``Authorization: Basic base64(user:password)`` from the credentials function.
- Bearer: a token from the challenge's ``realm``, for the union of the request's scopes
  (``repository:<path>:pull[,push]``) and the challenge's own ``scope``. With an identity token
  the token comes from an OAuth2 POST (``grant_type=refresh_token``); otherwise from a GET of
  ``realm?service=...&scope=...``, with Basic credentials when there are any. Tokens are cached
  per scope set until ``expires_in`` (60 s when the server gives none) runs out.

A request whose authorization is refused again after one fresh handshake fails with
``PermissionDenied``: the transport never loops on 401.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from pycontainerd.errdefs import InvalidArgument, PermissionDenied, Unavailable
from pycontainerd.remotes.credentials import Credentials, CredentialsFn, call_credentials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from pycontainerd.remotes.hosts import RegistryHost

log = logging.getLogger(__name__)

CLIENT_ID = "pycontainerd-client"
DEFAULT_TOKEN_LIFETIME = 60.0
# Schemes we know, best first: a registry offering several is answered with the best.
_PRIORITY = {"bearer": 0, "digest": 1, "basic": 2}
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge.

    Attributes:
        scheme: lower-case scheme name (``bearer``, ``basic``, ``digest``).
        params: auth-params, keys lower-cased, values unquoted.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


# -- parsing -------------------------------------------------------------------------------------


def _split_items(header: str) -> list[str]:
    """Split at commas outside quoted strings (quotes and escapes are kept for the next step)."""
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in header:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    items.append("".join(buf))
    return items


def _token_end(text: str, pos: int = 0) -> int:
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return pos


def _unquote(value: str) -> str:
    value = value.strip()
    if not value.startswith('"'):
        return value[: _token_end(value)]
    out, escaped = [], False
    for ch in value[1:]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            break
        else:
            out.append(ch)
    return "".join(out)


def _param(item: str) -> tuple[str, str] | None:
    """``key=value`` (value a token or a quoted string), or None if ``item`` is not one."""
    end = _token_end(item)
    if end == 0:
        return None
    rest = item[end:].lstrip()
    if not rest.startswith("="):
        return None
    return item[:end].lower(), _unquote(rest[1:])


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values into challenges, best scheme first.

    One header value may hold several challenges (``Bearer realm="x", Basic realm="y"``); quoted
    values may hold commas and backslash escapes. Unknown schemes are dropped, like containerd.
    """
    found: list[Challenge] = []
    for header in values:
        current: Challenge | None = None
        for raw in _split_items(header):
            item = raw.strip()
            if not item:
                continue
            param = _param(item)
            if param is not None and current is not None:
                current.params[param[0]] = param[1]
                continue
            end = _token_end(item)
            if end == 0:
                current = None  # garbage: skip up to the next scheme
                continue
            current = Challenge(item[:end].lower(), {})
            found.append(current)
            rest = item[end:].strip()
            param = _param(rest) if rest else None
            if param is not None:
                current.params[param[0]] = param[1]
    known = [c for c in found if c.scheme in _PRIORITY]
    return sorted(known, key=lambda c: _PRIORITY[c.scheme])


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value for Basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def repository_scope(path: str, *, push: bool = False) -> str:
    """``repository:<path>:pull`` (``pull,push`` when pushing)."""
    return f"repository:{path}:pull" + (",push" if push else "")


# -- token flow ----------------------------------------------------------------------------------


class TokenTransport(Protocol):
    """How the authorizer reaches a token server (the registry transport implements it)."""

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
        """Send one request with ``origin``'s TLS settings; returns (status, body)."""
        ...


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and when it stops being usable (monotonic seconds, None: never)."""

    value: str
    expires_at: float | None


def parse_token_response(body: bytes, now: float) -> Token:
    """The token in a token server's JSON answer (``token`` or ``access_token``).

    Raises:
        PermissionDenied: the answer holds no token.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PermissionDenied(f"unable to decode token response: {exc}") from exc
    if not isinstance(data, dict):
        raise PermissionDenied("unable to decode token response: not an object")
    value = data.get("access_token") or data.get("token")
    if not value or not isinstance(value, str):
        raise PermissionDenied("authorization server did not include a token in the response")
    try:
        lifetime = float(data.get("expires_in") or 0)
    except (TypeError, ValueError):
        lifetime = 0.0
    if lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    # Renew a little early, so a token does not expire between the check and the request.
    margin = min(10.0, lifetime / 10)
    return Token(value, now + lifetime - margin)


def _token_error(status: int, body: bytes, what: str) -> Exception:
    text = body[:200].decode(errors="replace").strip()
    message = f"failed to fetch {what}: status {status}" + (f": {text}" if text else "")
    if status in (401, 403):
        return PermissionDenied(message)
    if status >= 500 or status == 429:
        return Unavailable(message)
    return PermissionDenied(message)


@dataclass(slots=True)
class _Basic:
    username: str
    password: str


@dataclass(slots=True)
class _Bearer:
    origin: RegistryHost
    realm: str
    service: str
    scopes: tuple[str, ...]
    credentials: Credentials | None
    tokens: dict[str, Token] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


class Authorizer:
    """Per-host authorization state, shared by every request of a client.

    Args:
        transport: sends token requests.
        credentials: host -> credentials; None for anonymous access only.
        client_id: the OAuth2 ``client_id`` sent with refresh tokens.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        transport: TokenTransport,
        credentials: CredentialsFn | None = None,
        *,
        client_id: str = CLIENT_ID,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._client_id = client_id
        self._clock = clock
        self._handlers: dict[str, _Basic | _Bearer] = {}

    def forget(self, host: str) -> None:
        """Drop what is known of ``host`` (the next request goes out bare)."""
        self._handlers.pop(host, None)

    async def authorization(self, host: str, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` header for a request to ``host`` needing ``scopes``, None if none is known."""
        handler = self._handlers.get(host)
        if handler is None:
            return None
        if isinstance(handler, _Basic):
            return basic_authorization(handler.username, handler.password)
        token = await self._token(handler, scopes)
        return f"Bearer {token}"

    async def challenge(
        self, host: RegistryHost, netloc: str, challenges: Sequence[Challenge], *, rejected: bool
    ) -> bool:
        """Learn from a 401 of ``netloc``; True when the request is worth sending again.

        Args:
            host: the endpoint configuration (its TLS settings reach the token server too).
            netloc: ``host[:port]`` that answered 401.
            challenges: parsed ``WWW-Authenticate``.
            rejected: the request carried an ``Authorization`` header, which was refused.

        Raises:
            PermissionDenied: Basic auth is asked for and there are no credentials.
        """
        current = self._handlers.get(netloc)
        for c in challenges:
            if c.scheme == "bearer":
                if isinstance(current, _Bearer) and not rejected and "error" not in c.params:
                    # Same registry, new scope: the handler fetches a token for it.
                    return True
                realm = c.params.get("realm", "")
                if not realm:
                    raise InvalidArgument(f"no realm specified for token auth challenge from {netloc}")
                if urlsplit(realm).scheme not in ("http", "https"):
                    raise InvalidArgument(f"invalid token auth challenge realm {realm!r}")
                creds = await call_credentials(self._credentials, netloc)
                scopes = tuple(c.params.get("scope", "").split()) if c.params.get("scope") else ()
                self._handlers[netloc] = _Bearer(host, realm, c.params.get("service", ""), scopes, creds)
                return True
            if c.scheme == "basic":
                creds = await call_credentials(self._credentials, netloc)
                if creds is None or not creds.username or not creds.password:
                    raise PermissionDenied(f"{netloc} asks for basic auth and no credentials are configured")
                handler = _Basic(creds.username, creds.password)
                if rejected and current == handler:
                    return False  # the same credentials were just refused
                self._handlers[netloc] = handler
                return True
        return False

    # -- bearer tokens ---------------------------------------------------------------------------

    async def _token(self, handler: _Bearer, scopes: Sequence[str]) -> str:
        key = " ".join(sorted(set(scopes) | set(handler.scopes)))
        cached = handler.tokens.get(key)
        if cached is not None and (cached.expires_at is None or cached.expires_at > self._clock()):
            return cached.value
        lock = handler.locks.setdefault(key, asyncio.Lock())
        async with lock:
            # Another request may have fetched it while this one waited.
            cached = handler.tokens.get(key)
            if cached is not None and (cached.expires_at is None or cached.expires_at > self._clock()):
                return cached.value
            token = await self._fetch_token(handler, key.split() if key else [])
            handler.tokens[key] = token
            return token.value

    def _headers(self, handler: _Bearer) -> dict[str, str]:
        return {k: ", ".join(v) for k, v in handler.origin.headers.items()}

    async def _fetch_token(self, handler: _Bearer, scopes: list[str]) -> Token:
        creds = handler.credentials
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": handler.service,
                "client_id": self._client_id,
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            headers = self._headers(handler)
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            status, body = await self._transport.token_request(
                handler.origin, "POST", handler.realm, headers=headers, form=form
            )
            if 200 <= status < 300:
                return parse_token_response(body, self._clock())
            # Registries without the OAuth2 endpoint answer these; docker then asks with a GET.
            if status not in (400, 401, 404, 405):
                raise _token_error(status, body, "oauth token")
            log.debug("token POST to %s answered %d, trying GET", handler.realm, status)
            return await self._get_token(handler, scopes, creds.username, creds.identity_token)
        if creds is not None and creds.username and creds.password:
            return await self._get_token(handler, scopes, creds.username, creds.password)
        return await self._get_token(handler, scopes, "", "")

    async def _get_token(self, handler: _Bearer, scopes: list[str], username: str, secret: str) -> Token:
        params = [("service", handler.service)] if handler.service else []
        params += [("scope", s) for s in scopes]
        headers = self._headers(handler)
        if secret:
            headers["Authorization"] = basic_authorization(username, secret)
        status, body = await self._transport.token_request(
            handler.origin, "GET", handler.realm, headers=headers, params=params
        )
        if not 200 <= status < 300:
            raise _token_error(status, body, "token" if secret else "anonymous token")
        return parse_token_response(body, self._clock())
