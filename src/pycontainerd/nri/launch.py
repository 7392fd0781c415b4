"""Pre-installed plugins: discovery in ``plugin_path`` and launch with an inherited socket.

A plugin file is an executable named ``NN-name`` (two-digit index). Its configuration is
the first of ``<plugin_config_path>/NN-name.conf`` and ``<plugin_config_path>/name.conf``
that exists. The runtime starts it with *only* three environment variables, as containerd
does: ``NRI_PLUGIN_NAME``, ``NRI_PLUGIN_IDX`` and ``NRI_PLUGIN_SOCKET=3``, fd 3 being one
end of a socketpair whose other end the runtime keeps. The file descriptor is put in place
by ``posix_spawn`` file actions (no ``preexec_fn``, which is unsafe next to threads).
Standard input and output are ``/dev/null``; standard error is the runtime's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from dataclasses import dataclass

from .api import PLUGIN_IDX_ENV, PLUGIN_NAME_ENV, PLUGIN_SOCKET_ENV, parse_plugin_name
from .errors import NRIError

log = logging.getLogger(__name__)

PLUGIN_FD = 3


@dataclass(frozen=True, slots=True)
class PluginFile:
    """An installed plugin found in ``plugin_path``.

    Attributes:
        index: The two-digit index.
        name: The name after the index.
        path: The executable.
        config: Its configuration text ("" without a drop-in file).
    """

    index: str
    name: str
    path: str
    config: str


def plugin_config(config_dir: str, index: str, name: str) -> str:
    """The drop-in configuration of a plugin, or "".

    Raises:
        NRIError: If a drop-in exists but cannot be read.
    """
    for candidate in (f"{index}-{name}.conf", f"{name}.conf"):
        path = os.path.join(config_dir, candidate)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise NRIError(f"failed to read configuration for plugin {index}-{name}: {exc}") from exc
    return ""


def discover(plugin_dir: str, config_dir: str) -> list[PluginFile]:
    """List the executables of ``plugin_dir`` in name order.

    A missing directory means no plugins; a file that is not executable, or a directory, is
    skipped.

    Raises:
        NRIError: For an executable whose name is not ``NN-name`` (containerd refuses to
            start NRI then, rather than silently dropping a plugin).
    """
    try:
        entries = sorted(os.scandir(plugin_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise NRIError(f"failed to discover plugins in {plugin_dir}: {exc}") from exc
    found: list[PluginFile] = []
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            continue
        try:
            index, name = parse_plugin_name(entry.name)
        except ValueError as exc:
            raise NRIError(f"failed to discover plugins in {plugin_dir}: {exc}") from exc
        found.append(PluginFile(index, name, entry.path, plugin_config(config_dir, index, name)))
    return found


class LaunchedProcess:
    """A plugin process the runtime started; watched through a pidfd.

    Args:
        pid: The process ID (a child of ours).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd: int | None = os.pidfd_open(pid)

    @classmethod
    def spawn(cls, plugin: PluginFile, sock_fd: int) -> LaunchedProcess:
        """Start ``plugin`` with ``sock_fd`` as its fd 3.

        Raises:
            OSError: If the executable cannot be started.
        """
        env = {PLUGIN_NAME_ENV: plugin.name, PLUGIN_IDX_ENV: plugin.index, PLUGIN_SOCKET_ENV: str(PLUGIN_FD)}
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            # dup2 onto 3 clears close-on-exec; fds of ours are all close-on-exec otherwise.
            (os.POSIX_SPAWN_DUP2, sock_fd, PLUGIN_FD),
        ]
        pid = os.posix_spawn(plugin.path, [plugin.path], env, file_actions=actions)
        return cls(pid)

    @classmethod
    def spawn_connected(cls, plugin: PluginFile) -> tuple[LaunchedProcess, socket.socket]:
        """Start ``plugin`` on one end of a new socketpair; return it and our end.

        Raises:
            OSError: If the executable cannot be started.
        """
        local, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = cls.spawn(plugin, peer.fileno())
        except OSError:
            local.close()
            raise
        finally:
            peer.close()  # the child has its copy; ours would keep the pair alive after it died
        return process, local

    def _reap(self) -> bool:
        if self.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = -1  # someone else reaped it
        else:
            if pid == 0:
                return False
            self.returncode = os.waitstatus_to_exitcode(status)
        self._close_pidfd()
        return True

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    async def wait(self, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for the exit; returns the exit code or None."""
        if self._reap() or self._pidfd is None:
            return self.returncode
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        fd = self._pidfd

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(fd, on_exit)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await exited
        finally:
            loop.remove_reader(fd)
        self._reap()
        return self.returncode

    async def terminate(self, grace: float = 1.0) -> None:
        """Stop the process: wait ``grace`` seconds for it to exit on its own, then SIGKILL."""
        if await self.wait(grace) is not None:
            return
        if self._pidfd is not None:
            # Through the pidfd: never a recycled PID.
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        if await self.wait(5.0) is None:
            log.warning("nri: plugin process %d did not exit after SIGKILL", self.pid)
            self._close_pidfd()
