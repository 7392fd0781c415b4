from __future__ import annotations

import pytest

from pycontainerd.errdefs import FailedPrecondition, NotFound
from pycontainerd.runc_shim.process import Event, Process, State


def test_normal_life() -> None:
    p = Process("c1")
    assert p.transition(Event.START) is State.RUNNING
    assert p.transition(Event.PAUSE) is State.PAUSED
    assert p.transition(Event.RESUME) is State.RUNNING
    assert p.exited(137, when_ns=5)
    assert (p.state, p.exit_status, p.exited_at_ns) == (State.STOPPED, 137, 5)
    assert not p.exited(0), "the first exit wins"
    assert p.exit_status == 137
    assert p.transition(Event.DELETE) is State.DELETED
    assert p.status_code == 3


@pytest.mark.parametrize(
    ("path", "bad", "message"),
    [
        ([Event.START], Event.START, "cannot start a running process"),
        ([Event.START, Event.EXIT], Event.START, "cannot start a stopped process"),
        ([Event.START], Event.DELETE, "cannot delete a running process"),
        ([], Event.PAUSE, "cannot pause a created process"),
        ([Event.DELETE], Event.START, "cannot start a deleted process"),
    ],
)
def test_invalid_transitions(path: list[Event], bad: Event, message: str) -> None:
    p = Process("c1")
    for event in path:
        p.transition(event)
    with pytest.raises(FailedPrecondition, match=message):
        p.transition(bad)


def test_kill_after_exit() -> None:
    p = Process("c1")
    p.check_kill()
    p.exited(0)
    with pytest.raises(NotFound, match="already finished"):
        p.check_kill()
