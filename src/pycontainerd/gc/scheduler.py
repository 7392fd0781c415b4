"""When to collect garbage: containerd's scheduler, on asyncio.

Collections happen (a) ``startup_delay`` after start, (b) ``schedule_delay`` after a
deletion when none is scheduled (``deletion_threshold = 0``) or after ``deletion_threshold``
deletions, (c) after ``mutation_threshold`` mutations, (d) at once when a caller asks and
waits (``Leases.Delete`` with ``sync``). Between collections the scheduler keeps the time
spent collecting near ``pause_threshold`` of the wall time: the next periodic check comes
``avg_gc_time / pause_threshold - avg_gc_time`` later (at least 5 ms of gc time assumed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pycontainerd.aio import spawn
from pycontainerd.gc.durations import parse_duration
from pycontainerd.metadata import gc as metadata_gc

log = logging.getLogger(__name__)

MINIMUM_GC_TIME = 0.005


@dataclass(slots=True)
class SchedulerConfig:
    """``[plugins."io.containerd.gc.v1.scheduler"]``."""

    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: str = "0ms"
    startup_delay: str = "100ms"

    def validate(self) -> None:
        """ValueError naming the bad key."""
        if not 0 <= self.pause_threshold <= 0.5:
            raise ValueError(f"pause_threshold must be between 0 and 0.5, not {self.pause_threshold}")
        for key in ("schedule_delay", "startup_delay"):
            parse_duration(getattr(self, key))


Collect = Callable[[], metadata_gc.Sweep]


class Scheduler:
    """Runs ``collect`` according to :class:`SchedulerConfig`."""

    def __init__(self, collect: Collect, config: SchedulerConfig) -> None:
        config.validate()
        self._collect = collect
        self._cfg = config
        self._schedule_delay = parse_duration(config.schedule_delay)
        self._startup_delay = parse_duration(config.startup_delay)
        self._deletions = 0
        self._mutations = 0
        self._triggered = False
        self._next: float | None = None
        self._last: float | None = None
        self._interval = 1.0
        self._gc_time_sum = 0.0
        self._collections = 0
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[metadata_gc.Sweep]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_sweep: metadata_gc.Sweep | None = None

    def start(self) -> None:
        """Start the background loop."""
        if self._startup_delay > 0:
            self._next = time.monotonic() + self._startup_delay
        self._task = spawn(self._run(), name="gc-scheduler")

    async def close(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _schedule(self, delay: float) -> None:
        self._next = time.monotonic() + delay
        self._wake.set()

    def on_dirty(self) -> None:
        """A committed deletion (counts as a mutation too)."""
        self._deletions += 1
        self._mutations += 1
        cfg = self._cfg
        immediate = (cfg.deletion_threshold > 0 and self._deletions >= cfg.deletion_threshold) or (
            self._next is None
            and (
                (cfg.deletion_threshold == 0 and self._deletions > 0)
                or (cfg.mutation_threshold > 0 and self._mutations >= cfg.mutation_threshold)
            )
        )
        if immediate and (self._next is None or self._next > time.monotonic() + self._schedule_delay):
            self._schedule(self._schedule_delay)

    async def schedule_and_wait(self) -> metadata_gc.Sweep:
        """Collect as soon as possible and return what was removed."""
        future: asyncio.Future[metadata_gc.Sweep] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._triggered = True
        if self._next is None or self._next > time.monotonic() + self._schedule_delay:
            self._schedule(self._schedule_delay)
        return await future

    async def _sleep_until_due(self) -> None:
        while True:
            self._wake.clear()
            if self._next is None:
                await self._wake.wait()
                continue
            delay = self._next - time.monotonic()
            if delay <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                return

    async def _run(self) -> None:
        while True:
            await self._sleep_until_due()
            cfg = self._cfg
            if (
                not self._triggered
                and self._last is not None
                and self._deletions == 0
                and (cfg.mutation_threshold == 0 or self._mutations < cfg.mutation_threshold)
            ):
                self._next = time.monotonic() + self._interval
                continue
            self._run_once()

    def _run_once(self) -> None:
        waiters, self._waiters = self._waiters, []
        try:
            sweep = self._collect()
        except Exception as exc:
            log.exception("garbage collection failed")
            self._last = time.monotonic()
            self._next = self._last + self._interval + 1.0
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.last_sweep = sweep
        self._triggered = False
        self._deletions = self._mutations = 0
        self._gc_time_sum += sweep.duration_s
        self._collections += 1
        if self._cfg.pause_threshold > 0:
            avg = max(self._gc_time_sum / self._collections, MINIMUM_GC_TIME)
            self._interval = avg / self._cfg.pause_threshold - avg
        self._last = time.monotonic()
        self._next = self._last + self._interval
        log.debug(
            "garbage collected",
            extra={
                "d": f"{sweep.duration_s * 1000:.2f}ms",
                "blobs": len(sweep.blobs),
                "bytes": sweep.bytes_freed,
            },
        )
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(sweep)
