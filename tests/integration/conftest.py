"""Fixtures for tests against a real daemon."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.support.daemon import DaemonProcess, running_daemon

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh pycontainerd on a private socket, root and state in a temp dir."""
    if shutil.which("ctr") is None:
        pytest.fail("Debian's ctr is required: apt-get install containerd")
    with running_daemon() as d:
        yield d
