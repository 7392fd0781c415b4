"""One reaper for every child of the shim.

A shim must collect the exit status of container processes that runc leaves behind (it is
their subreaper) *and* of the runc invocations themselves. Two waiters race for the same
statuses (a ``waitpid(-1)`` loop steals what ``subprocess`` waits for), so everything goes
through this reaper: children are spawned with :func:`spawn` (no Popen), and exits are
delivered to whoever awaits :meth:`Reaper.wait`, even if the child died before anyone asked.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Make orphaned descendants re-parent to this process (prctl PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def exit_status(status: int) -> int:
    """A wait status as containerd reports it: the exit code, or 128 + signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 255


class Reaper:
    """Collects child exits with ``waitpid(-1)`` on SIGCHLD and hands them out by PID."""

    def __init__(self) -> None:
        self._waiters: dict[int, list[asyncio.Future[int]]] = {}
        self._exited: dict[int, int] = {}
        self._subscribers: list[asyncio.Queue[tuple[int, int]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Start reaping on the running loop (call once, from the shim's main coroutine)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def reap(self) -> None:
        """Collect every exited child now."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = exit_status(status)
            waiters = self._waiters.pop(pid, [])
            if not waiters:
                self._exited[pid] = code
            for fut in waiters:
                if not fut.done():
                    fut.set_result(code)
            for queue in self._subscribers:
                queue.put_nowait((pid, code))

    async def wait(self, pid: int) -> int:
        """The exit status of child ``pid`` (immediately if it already exited)."""
        if pid in self._exited:
            return self._exited.pop(pid)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(pid, []).append(fut)
        self.reap()
        return await fut

    def forget(self, pid: int) -> int | None:
        """Drop (and return) a remembered exit nobody waited for."""
        return self._exited.pop(pid, None)

    def subscribe(self) -> asyncio.Queue[tuple[int, int]]:
        """A queue receiving (pid, status) of every exit from now on."""
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a child without Popen (so only the reaper ever waits for it); returns its PID."""
    actions: list[tuple[int, ...]] = []
    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        if fd is not None:
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    path = argv[0]
    if "/" not in path:
        from shutil import which

        found = which(path)
        if found is None:
            raise FileNotFoundError(path)
        path = found
    environ = dict(env if env is not None else os.environ)
    if cwd is None:
        return os.posix_spawn(path, list(argv), environ, file_actions=actions)
    # posix_spawn has no chdir action before Python 3.13's; run through a tiny shell-free hop.
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return os.posix_spawn(path, list(argv), environ, file_actions=actions)
    finally:
        os.chdir(old)
