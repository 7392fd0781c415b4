"""One-time tokens for streaming requests (kubelet's ``requestCache``).

The CRI call (Exec, Attach, PortForward) stores the request and returns a URL carrying a random
token; the client's HTTP request consumes it. A token is good for one connection and for
``ttl`` seconds, and at most ``capacity`` requests wait at once, so a client that asks for URLs
and never connects cannot grow the cache without bound.

Invariants: entries are kept in insertion order, which is also expiry order (every entry gets the
same TTL and the clock never goes backwards), so expiring is popping from the front.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pycontainerd.errdefs import ResourceExhausted

T = TypeVar("T")

DEFAULT_TTL = 60.0
"""Seconds a token stays valid (kubelet: 1 minute)."""

DEFAULT_CAPACITY = 1000
"""Requests that may wait for their client at once (kubelet: 1000)."""

TOKEN_BYTES = 16
"""Random bytes in a token (kubelet uses 8; 16 is 128 bits of entropy)."""

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry(Generic[T]):
    request: T
    expires: float


class RequestCache(Generic[T]):
    """A bounded, expiring map from one-time tokens to requests.

    Args:
        ttl: Seconds a token stays valid.
        capacity: How many unexpired requests may wait at once.
        clock: Monotonic time source, injectable for tests.
        token_bytes: Random bytes per token.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        capacity: int = DEFAULT_CAPACITY,
        clock: Clock = time.monotonic,
        token_bytes: int = TOKEN_BYTES,
    ) -> None:
        if ttl <= 0 or capacity <= 0 or token_bytes < 8:
            raise ValueError("ttl and capacity must be positive, tokens at least 8 bytes")
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._token_bytes = token_bytes
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def insert(self, request: T) -> str:
        """Store ``request`` and return its new token.

        Raises:
            ResourceExhausted: ``capacity`` unexpired requests are already waiting.
        """
        self._expire()
        if len(self._entries) >= self._capacity:
            raise ResourceExhausted("maximum number of in-flight requests exceeded")
        while True:
            token = secrets.token_urlsafe(self._token_bytes)
            if token not in self._entries:
                break
        self._entries[token] = _Entry(request, self._clock() + self._ttl)
        return token

    def consume(self, token: str) -> T | None:
        """Remove and return the request for ``token``; None if unknown, used or expired."""
        self._expire()
        entry = self._entries.pop(token, None)
        return None if entry is None else entry.request

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            token, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            del self._entries[token]
