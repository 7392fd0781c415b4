"""The life of a container process, as an explicit state machine (no I/O).

Invariants:

1. Every change of state goes through :meth:`Process.transition` and the :data:`TRANSITIONS`
   table; anything else is an error with containerd's wording ("cannot start a stopped
   process"), raised before any runc command runs.
2. An exit is recorded once: the first exit status and time win.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from pycontainerd.errdefs import FailedPrecondition, NotFound


class State(enum.Enum):
    """Process states; values are the words containerd uses in messages."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"


class Event(enum.Enum):
    """What can happen to a process."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    EXIT = "exit"
    DELETE = "delete"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.CREATED, Event.START): State.RUNNING,
    (State.CREATED, Event.EXIT): State.STOPPED,
    (State.CREATED, Event.DELETE): State.DELETED,
    (State.RUNNING, Event.PAUSE): State.PAUSED,
    (State.RUNNING, Event.EXIT): State.STOPPED,
    (State.PAUSED, Event.RESUME): State.RUNNING,
    (State.PAUSED, Event.EXIT): State.STOPPED,
    (State.STOPPED, Event.DELETE): State.DELETED,
}

# Wire values of containerd.v1.types.Status.
STATUS_CODE = {State.CREATED: 1, State.RUNNING: 2, State.STOPPED: 3, State.PAUSED: 4, State.DELETED: 3}


@dataclass(slots=True)
class Process:
    """An init or exec process of one container."""

    id: str
    exec_id: str = ""
    pid: int = 0
    state: State = State.CREATED
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at_ns: int = 0
    history: list[State] = field(default_factory=list)

    def can(self, event: Event) -> bool:
        """Whether ``event`` is allowed now."""
        return (self.state, event) in TRANSITIONS

    def check(self, event: Event) -> None:
        """Raise FailedPrecondition if ``event`` is not allowed now."""
        if not self.can(event):
            raise FailedPrecondition(f"cannot {event.value} a {self.state.value} process")

    def transition(self, event: Event) -> State:
        """Apply ``event``; returns the new state."""
        self.check(event)
        self.history.append(self.state)
        self.state = TRANSITIONS[(self.state, event)]
        return self.state

    def exited(self, status: int, when_ns: int | None = None) -> bool:
        """Record the exit; False if it was already recorded (or the process is gone)."""
        if self.state in (State.STOPPED, State.DELETED) or not self.can(Event.EXIT):
            return False
        self.exit_status = status
        self.exited_at_ns = when_ns if when_ns is not None else time.time_ns()
        self.transition(Event.EXIT)
        return True

    def check_kill(self) -> None:
        """Signals go to created, running or paused processes only."""
        if self.state in (State.STOPPED, State.DELETED):
            raise NotFound("process already finished")

    @property
    def status_code(self) -> int:
        """The ``containerd.v1.types.Status`` value of the state."""
        return STATUS_CODE[self.state]
