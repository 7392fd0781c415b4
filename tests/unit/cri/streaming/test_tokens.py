"""The one-time request cache, on a clock the test moves."""

from __future__ import annotations

import pytest

from pycontainerd.cri.streaming.tokens import RequestCache
from pycontainerd.errdefs import ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_good_once() -> None:
    cache: RequestCache[str] = RequestCache(clock=Clock())
    token = cache.insert("exec")
    assert cache.consume(token) == "exec"
    assert cache.consume(token) is None
    assert cache.consume("never-issued") is None


def test_tokens_expire_after_the_ttl() -> None:
    clock = Clock()
    cache: RequestCache[str] = RequestCache(ttl=60, clock=clock)
    early, late = cache.insert("a"), None
    clock.now += 30
    late = cache.insert("b")
    clock.now += 29.999
    assert cache.consume(early) == "a"
    clock.now += 0.001  # "b" is 30 s old; a token issued now+60 would be fresh
    reissued = cache.insert("c")
    clock.now += 30
    assert cache.consume(late) is None  # exactly at its expiry
    assert cache.consume(reissued) == "c"


def test_capacity_is_bounded_and_expiry_frees_room() -> None:
    clock = Clock()
    cache: RequestCache[int] = RequestCache(ttl=10, capacity=3, clock=clock)
    for i in range(3):
        cache.insert(i)
    with pytest.raises(ResourceExhausted, match="in-flight"):
        cache.insert(3)
    clock.now += 10
    assert len(cache) == 0
    cache.insert(4)


def test_tokens_are_unguessable() -> None:
    cache: RequestCache[int] = RequestCache(capacity=1000, clock=Clock())
    tokens = {cache.insert(i) for i in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 22 and t.isascii() and "/" not in t and "+" not in t for t in tokens)  # 16 bytes, base64url


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestCache(ttl=0)
    with pytest.raises(ValueError, match="positive"):
        RequestCache(capacity=0)
