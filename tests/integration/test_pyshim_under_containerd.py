"""Our shim is a real runtime v2 shim: the real containerd 1.6 runs containers through it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.real_containerd import real_containerd

pytestmark = [pytest.mark.integration, pytest.mark.root]

REF = "docker.io/library/busybox:referee"


def ctr(sock: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ctr", "-a", str(sock), "-n", "referee", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_real_containerd_runs_our_shim(tmp_path: Path) -> None:
    image = build_image(tmp_path / "bb.tar", ref=REF)
    with real_containerd() as sock:
        ctr(sock, "images", "import", str(image.path))
        out = ctr(sock, "run", "--rm", "--runtime", "io.containerd.pyrunc.v2", REF, "r1", "echo", "hi from pyrunc")
        assert out.stdout.strip() == "hi from pyrunc"
        code = ctr(
            sock, "run", "--rm", "--runtime", "io.containerd.pyrunc.v2", REF, "r2", "sh", "-c", "exit 5", check=False
        )
        assert code.returncode == 5
        ctr(sock, "run", "-d", "--runtime", "io.containerd.pyrunc.v2", REF, "r3", "sleep", "300")
        try:
            assert "RUNNING" in ctr(sock, "tasks", "ls").stdout
            assert ctr(sock, "tasks", "exec", "--exec-id", "e1", "r3", "echo", "exec ok").stdout.strip() == "exec ok"
            ctr(sock, "tasks", "kill", "-s", "9", "r3")
            deadline = time.monotonic() + 10
            while "STOPPED" not in ctr(sock, "tasks", "ls").stdout and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "STOPPED" in ctr(sock, "tasks", "ls").stdout
        finally:
            ctr(sock, "tasks", "rm", "-f", "r3", check=False)
            ctr(sock, "containers", "rm", "r3", check=False)
