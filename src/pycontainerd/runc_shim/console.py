"""TTY containers: receive the pty master from runc's console socket and pump it.

runc creates the pty inside the container and sends its master end over a unix socket
(``--console-socket``) as SCM_RIGHTS. The shim then copies the client's stdin FIFO into the
master and the master's output into the stdout FIFO (blocking copies in two daemon threads: a
terminal is interactive, low-volume traffic), and applies window sizes with TIOCSWINSZ.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import socket
import struct
import tempfile
import termios
import threading

RECV_TIMEOUT = 30.0


class ConsoleSocket:
    """A listening socket runc connects to once, to hand over the pty master."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pyrunc-console-")
        self.path = os.path.join(self._dir, "console.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1)
        self._sock.settimeout(RECV_TIMEOUT)

    def receive_master(self) -> int:
        """Block until runc sends the master fd (call in a thread while runc create runs)."""
        conn, _ = self._sock.accept()
        with conn:
            fds = array.array("i")
            _, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not fds:
            raise OSError("runc sent no console file descriptor")
        return fds[0]

    def close(self) -> None:
        """Remove the socket."""
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self._dir)


def resize(master: int, width: int, height: int) -> None:
    """Set the terminal's window size."""
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _copy(src: int, dst: int) -> None:
    while True:
        try:
            data = os.read(src, 32 * 1024)
        except OSError:
            return
        if not data:
            return
        try:
            os.write(dst, data)
        except OSError:
            return


class Console:
    """A running terminal: the master fd and the copy threads."""

    def __init__(self, master: int, stdin: str, stdout: str) -> None:
        self.master = master
        self._fds: list[int] = []
        if stdin:
            fd = os.open(stdin, os.O_RDWR | os.O_CLOEXEC)
            self._fds.append(fd)
            threading.Thread(target=_copy, args=(fd, master), daemon=True).start()
        if stdout:
            fd = os.open(stdout, os.O_RDWR | os.O_CLOEXEC)
            self._fds.append(fd)
            threading.Thread(target=_copy, args=(master, fd), daemon=True).start()

    def close(self) -> None:
        """Close everything; the copy threads end on their next read or write."""
        for fd in [self.master, *self._fds]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
