"""Ref locks and the Go-style formatting of their Unavailable message."""

from __future__ import annotations

import re
import threading

import pytest

from pycontainerd.content.local.locks import RefLocks, format_duration, format_time
from pycontainerd.errdefs import Unavailable

S = 1_000_000_000


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_500, "1.5µs"),
        (1_000_000, "1ms"),
        (1_234_567, "1.234567ms"),
        (S, "1s"),
        (1_500_000_000, "1.5s"),
        (60 * S, "1m0s"),
        (61 * S + 5, "1m1.000000005s"),
        (3600 * S, "1h0m0s"),
        (3723 * S + S // 2, "1h2m3.5s"),
        (-1_500, "-1.5µs"),
    ],
)
def test_format_duration_matches_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_format_time() -> None:
    assert format_time(0) == "1970-01-01 00:00:00 +0000 UTC"
    assert format_time(1_700_000_000 * S + 120_000_000) == "2023-11-14 22:13:20.12 +0000 UTC"
    assert format_time(5) == "1970-01-01 00:00:00.000000005 +0000 UTC"


def test_acquire_release() -> None:
    locks = RefLocks()
    locks.acquire("a")
    locks.acquire("b")
    assert locks.held("a")
    with pytest.raises(Unavailable) as exc:
        locks.acquire("a")
    assert re.fullmatch(
        r"ref a locked for [0-9.]+(ns|µs|ms|s) \(since \d{4}-\d\d-\d\d [0-9:.]+ \+0000 UTC\)",
        exc.value.message,
    )
    locks.release("a")
    locks.release("a")  # releasing a free ref is harmless
    assert not locks.held("a")
    locks.acquire("a")


def test_threads_race_for_one_ref() -> None:
    locks = RefLocks()
    rounds, workers = 200, 8
    wins = [0] * rounds
    barrier = threading.Barrier(workers)
    mu = threading.Lock()

    def run() -> None:
        for r in range(rounds):
            barrier.wait()
            try:
                locks.acquire(f"ref-{r}")
            except Unavailable:
                continue
            with mu:
                wins[r] += 1

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins == [1] * rounds
