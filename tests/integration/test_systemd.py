"""Running under systemd: the shipped unit file is valid, and the daemon reports READY/STOPPING
on $NOTIFY_SOCKET as a Type=notify service must."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "pycontainerd.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "pycontainerd.service"
    daemon = Path(sys.executable).parent / "pycontainerd"
    text = UNIT.read_text()
    assert "Type=notify" in text and "KillMode=process" in text and "Delegate=yes" in text
    unit.write_text(text.replace("/usr/local/bin/pycontainerd", str(daemon)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pycontainerd.service" not in result.stderr, result.stderr


def test_ready_and_stopping_are_notified(tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(30)
        with running_daemon(env={"NOTIFY_SOCKET": str(address)}) as d:
            ready = sock.recv(4096).decode().split("\n")
            assert ready == ["READY=1", f"MAINPID={d.pid}"]
            d.stop()
            assert sock.recv(4096) == b"STOPPING=1"
