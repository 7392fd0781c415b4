"""Fixtures for tests against a real daemon, and host clean-up after the session."""

from __future__ import annotations

import contextlib
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


@pytest.fixture(scope="session", autouse=True)
def host_cleanup() -> Iterator[None]:
    """After the session: stop the shim template, drop dead shims' sockets (empty cgroups are
    tests/conftest.py's)."""
    yield
    stop_template()
    sockets = Path(SOCKET_DIR)
    if sockets.is_dir():
        for sock in sockets.iterdir():
            if not socket_in_use(sock):
                with contextlib.suppress(OSError):
                    sock.unlink()


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh pycontainerd on a private socket, root and state in a temp dir."""
    if shutil.which("ctr") is None:
        pytest.fail("Debian's ctr is required: apt-get install containerd")
    with running_daemon() as d:
        yield d
