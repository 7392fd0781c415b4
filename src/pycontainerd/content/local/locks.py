"""The in-process table of ingest refs that have an open writer.

One daemon owns a store root, so a lock held in memory is enough to keep two writers off the
same ingest: a second :meth:`RefLocks.acquire` fails at once with ``Unavailable`` instead of
waiting, as in containerd, because a client that finds its ref busy is expected to back off
and retry (``ctr`` and the transfer service both do). The message says how long the ref has
been held: a lock held for hours means a writer was leaked, a lock held for milliseconds
means two clients raced.

Nothing is written to disk for a lock, so a daemon killed with ``kill -9`` leaves no stale
lock behind; the ingest itself stays on disk and the next writer resumes it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pycontainerd.errdefs import Unavailable

_NS_PER_US = 1_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class _Held:
    since_ns: int  # wall clock, for the message
    since_mono_ns: int  # monotonic, for the duration (immune to clock steps)


class RefLocks:
    """A thread-safe set of locked refs, each with the time it was taken."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._held: dict[str, _Held] = {}

    def acquire(self, ref: str) -> None:
        """Take ``ref`` or fail without waiting.

        Raises:
            Unavailable: another writer holds ``ref``.
        """
        with self._mu:
            held = self._held.get(ref)
            if held is None:
                self._held[ref] = _Held(time.time_ns(), time.monotonic_ns())
                return
            waited = time.monotonic_ns() - held.since_mono_ns
        since = format_time(held.since_ns)
        raise Unavailable(f"ref {ref} locked for {format_duration(waited)} (since {since})")

    def release(self, ref: str) -> None:
        """Give ``ref`` back; releasing a ref that is not held does nothing."""
        with self._mu:
            self._held.pop(ref, None)

    def held(self, ref: str) -> bool:
        """Whether a writer holds ``ref`` right now."""
        with self._mu:
            return ref in self._held


def format_duration(ns: int) -> str:
    """Render a duration the way Go's ``time.Duration.String`` does (``1.5ms``, ``2m3.25s``).

    containerd's lock message is built with Go's formatting; matching it keeps log searches
    and client-side message checks working against either daemon.
    """
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < _NS_PER_US:
        return f"{sign}{ns}ns"
    if ns < _NS_PER_MS:
        return f"{sign}{_decimal(ns, _NS_PER_US)}µs"
    if ns < _NS_PER_S:
        return f"{sign}{_decimal(ns, _NS_PER_MS)}ms"
    hours, rest = divmod(ns, 3600 * _NS_PER_S)
    minutes, rest = divmod(rest, 60 * _NS_PER_S)
    seconds = f"{_decimal(rest, _NS_PER_S)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _decimal(value: int, unit: int) -> str:
    """``value / unit`` with the exact fraction, trailing zeros dropped (Go style)."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    width = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(width, '0').rstrip('0')}"


def format_time(ns: int) -> str:
    """Render a wall-clock time like Go's ``time.Time.String`` in UTC.

    Example: ``2026-01-02 15:04:05.123456789 +0000 UTC``.
    """
    seconds, frac = divmod(ns, _NS_PER_S)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{stamp}{fraction} +0000 UTC"
