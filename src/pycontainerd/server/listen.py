"""Preparing unix socket paths: parent directories, stale sockets, ownership."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TYPE_CHECKING

from pycontainerd.errdefs import FailedPrecondition

if TYPE_CHECKING:
    from pathlib import Path


def socket_in_use(path: Path) -> bool:
    """True when something accepts connections on ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def prepare(path: Path) -> None:
    """Create the parent directory and remove a stale socket; refuse a live one.

    containerd silently removes whatever is at the path; we refuse when another daemon
    still answers there, so two daemons can never steal each other's socket.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    if path.exists() or path.is_symlink():
        if socket_in_use(path):
            raise FailedPrecondition(f"address {path} is in use by another process")
        path.unlink()


def secure(path: Path, uid: int, gid: int, mode: int = 0o660) -> None:
    """Give the socket its mode and owner (0660, root by default)."""
    os.chmod(path, mode)
    if uid or gid:
        os.chown(path, uid, gid)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the socket file, to recognise it later; None if absent."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def remove(path: Path, expected: tuple[int, int] | None = None) -> None:
    """Remove a socket file if it is still there (and, with ``expected``, still ours).

    A daemon whose socket was replaced by another daemon's must not delete the newcomer's.
    """
    if expected is not None and identity(path) != expected:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
