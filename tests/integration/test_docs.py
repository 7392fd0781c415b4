"""The documented examples run as written: every shell block marked ``<!-- doc-test -->`` in the
docs listed here is run in order, in one scratch directory, and must succeed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- doc-test -->\s*```sh\n(.*?)```", re.S)


def doc_blocks(name: str) -> list[str]:
    blocks = MARKED.findall((REPO / "docs" / name).read_text())
    assert blocks, f"no doc-test block in docs/{name}"
    return blocks


def run_block(block: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"block failed ({result.returncode}):\n{block}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = {**os.environ, "DEMO": str(demo), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    blocks = doc_blocks("getting-started.md")
    assert len(blocks) == 4
    try:
        start, run, scrape, stop = (run_block(b, env) for b in blocks)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((demo / "daemon.pid").read_text()), signal.SIGKILL)
    assert f'root = "{demo}/root"' in start and "Version:" in start
    assert "hello from pycontainerd" in run
    sample = scrape.strip().splitlines()[0]
    assert 'grpc_method="Create"' in sample and 'grpc_code="OK"' in sample and float(sample.split()[-1]) >= 1
    assert stop.strip() == "stopped"
