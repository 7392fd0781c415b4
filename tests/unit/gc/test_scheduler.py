from __future__ import annotations

import asyncio

import pytest

from pycontainerd.gc.durations import parse_duration
from pycontainerd.gc.scheduler import Scheduler, SchedulerConfig
from pycontainerd.metadata.gc import Sweep


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("100ms", 0.1), ("1.5s", 1.5), ("1m30s", 90.0), ("2h", 7200.0), ("250us", 0.00025)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["1", "abc", "5 s", "1x"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


async def until(condition: object, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait (polling) until ``condition()`` holds, so a loaded CI machine does not make it flaky."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:  # type: ignore[operator]  # noqa: ASYNC110
        await asyncio.sleep(0.005)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_startup_then_deletion_then_sync() -> None:
    calls: list[float] = []

    def collect() -> Sweep:
        calls.append(asyncio.get_event_loop().time())
        return Sweep()

    async def scenario() -> None:
        sched = Scheduler(collect, SchedulerConfig(startup_delay="20ms", schedule_delay="0ms", pause_threshold=0.5))
        sched.start()
        await until(lambda: len(calls) >= 1)
        assert len(calls) == 1, "startup collection"
        sched.on_dirty()
        # pause_threshold 0.5 with a ~5ms minimum gc time: next interval is ~5ms.
        await until(lambda: len(calls) >= 2)
        assert len(calls) == 2, "deletion triggers a collection"
        await asyncio.sleep(0.05)
        assert len(calls) == 2, "nothing dirty: no further collection"
        sweep = await asyncio.wait_for(sched.schedule_and_wait(), 2)
        assert isinstance(sweep, Sweep)
        assert len(calls) == 3
        await sched.close()

    run(scenario())


def test_failed_collection_fails_waiters_and_continues() -> None:
    attempts = []

    def collect() -> Sweep:
        attempts.append(1)
        raise RuntimeError("disk on fire")

    async def scenario() -> None:
        sched = Scheduler(collect, SchedulerConfig(startup_delay="0ms"))
        sched.start()
        with pytest.raises(RuntimeError, match="disk on fire"):
            await asyncio.wait_for(sched.schedule_and_wait(), 2)
        await sched.close()

    run(scenario())
    assert attempts


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="pause_threshold"):
        SchedulerConfig(pause_threshold=0.9).validate()
    with pytest.raises(ValueError, match="invalid duration"):
        SchedulerConfig(schedule_delay="soon").validate()
