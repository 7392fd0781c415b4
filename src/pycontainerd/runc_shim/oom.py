"""OOM notifications from the cgroup v1 memory controller (eventfd on memory.oom_control).

The container's memory cgroup is read from ``/proc/<init pid>/cgroup``; an eventfd registered
through ``cgroup.event_control`` becomes readable each time the kernel's OOM killer acts in
that cgroup. On a cgroup v2-only host (no v1 memory controller) nothing is watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

V1_MEMORY_ROOT = "/sys/fs/cgroup/memory"


def memory_cgroup(pid: int) -> str | None:
    """The v1 memory cgroup directory of ``pid``, or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = os.path.join(V1_MEMORY_ROOT, path.lstrip("/"))
            return directory if os.path.isdir(directory) else None
    return None


class OOMWatcher:
    """Calls ``on_oom`` whenever the OOM killer acts in the cgroup of ``pid``."""

    def __init__(self, pid: int, on_oom: Callable[[], None]) -> None:
        self._efd = -1
        self._ofd = -1
        directory = memory_cgroup(pid)
        if directory is None:
            return
        try:
            self._ofd = os.open(os.path.join(directory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            with open(os.path.join(directory, "cgroup.event_control"), "w") as fh:
                fh.write(f"{self._efd} {self._ofd}")
        except OSError:
            self.close()
            return
        self._on_oom = on_oom
        self._kills = self._oom_kills()
        asyncio.get_running_loop().add_reader(self._efd, self._readable)

    @property
    def active(self) -> bool:
        """Whether a cgroup is being watched."""
        return self._efd >= 0

    def _readable(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        # The eventfd also fires (for good) when the cgroup goes away, and the kernel may signal
        # several times for one event: report only a grown oom_kill counter.
        kills = self._oom_kills()
        if kills is None:
            self.close()
            return
        if self._kills is None or kills > self._kills:
            self._kills = kills
            self._on_oom()

    def check(self) -> None:
        """Report an OOM kill not yet seen, without waiting for the eventfd: a process killed by
        the OOM killer can be reaped (and its exit handled) before the event loop reads it."""
        if self._efd < 0:
            return
        kills = self._oom_kills()
        if kills is not None and (self._kills is None or kills > self._kills):
            self._kills = kills
            self._on_oom()

    def _oom_kills(self) -> int | None:
        """The cgroup's oom_kill counter, or None once the cgroup is gone."""
        try:
            text = os.pread(self._ofd, 4096, 0).decode()
        except OSError:
            return None
        if not text:
            return None
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        """Stop watching."""
        if self._efd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._efd)
            os.close(self._efd)
            self._efd = -1
        if self._ofd >= 0:
            os.close(self._ofd)
            self._ofd = -1
