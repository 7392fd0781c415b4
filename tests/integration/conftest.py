"""Fixtures for tests against a real daemon, and host clean-up after the session."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pycontainerd.runc_shim.main import SOCKET_DIR
from pycontainerd.runc_shim.zygote_client import stop_template
from pycontainerd.server.listen import socket_in_use
from tests.support.daemon import DaemonProcess, running_daemon

if TYPE_CHECKING:
    from collections.abc import Iterator

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dirs() -> set[Path]:
    """Top-level directories of every cgroup v1 controller (runc makes one per namespace)."""
    if not CGROUP_ROOT.is_dir():
        return set()
    return {d for ctrl in CGROUP_ROOT.iterdir() if ctrl.is_dir() for d in ctrl.iterdir() if d.is_dir()}


@pytest.fixture(scope="session", autouse=True)
def host_cleanup() -> Iterator[None]:
    """After the session: stop the shim template, drop dead shims' sockets, remove the empty
    per-namespace cgroups runc created (runc removes a container's cgroup, not its parent)."""
    before = _cgroup_dirs()
    yield
    stop_template()
    sockets = Path(SOCKET_DIR)
    if sockets.is_dir():
        for sock in sockets.iterdir():
            if not socket_in_use(sock):
                with contextlib.suppress(OSError):
                    sock.unlink()
    for directory in sorted(_cgroup_dirs() - before, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only if empty: never touch a cgroup still in use


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh pycontainerd on a private socket, root and state in a temp dir."""
    if shutil.which("ctr") is None:
        pytest.fail("Debian's ctr is required: apt-get install containerd")
    with running_daemon() as d:
        yield d
