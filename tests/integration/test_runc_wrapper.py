"""The shim's runc wrapper and reaper against the real runc (in a child process: it becomes a subreaper)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.rootfs import make_bundle

pytestmark = [pytest.mark.root, pytest.mark.integration]

SCRIPT = r"""
import asyncio, os, sys
from pycontainerd.runc_shim.reaper import Reaper, become_subreaper
from pycontainerd.runc_shim.runc import Runc, Stdio, RuncError

async def main(bundle, root, cid):
    become_subreaper()
    reaper = Reaper(); reaper.install()
    runc = Runc(reaper, root, log_path=os.path.join(bundle, "log.json"))
    out_r, out_w = os.pipe()
    pid_file = os.path.join(bundle, "init.pid")
    await runc.create(cid, bundle, pid_file=pid_file, stdio=Stdio(stdout=out_w, stderr=out_w))
    os.close(out_w)
    pid = int(open(pid_file).read())
    state = await runc.state(cid)
    assert state["status"] == "created", state
    await runc.start(cid)
    status = await asyncio.wait_for(reaper.wait(pid), 30)
    output = os.read(out_r, 4096).decode()
    await runc.delete(cid)
    try:
        await runc.state(cid)
    except Exception as exc:
        print("gone:", type(exc).__name__)
    print("status:", status)
    print("output:", output.strip())

asyncio.run(main(*sys.argv[1:]))
"""


def test_create_start_wait_delete(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", ["sh", "-c", "echo hello from runc; exit 7"])
    cid = f"pyc-test-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(bundle), str(tmp_path / "runc-root"), cid],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "status: 7" in result.stdout
    assert "output: hello from runc" in result.stdout
    assert "gone: NotFound" in result.stdout
