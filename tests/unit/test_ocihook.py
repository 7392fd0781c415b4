from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pycontainerd.cmd.ocihook import render


def test_render_placeholders(tmp_path: Path) -> None:
    state = {"id": "c1", "pid": 42, "bundle": str(tmp_path), "status": "created", "annotations": {"k": "v"}}
    facts = {"id": "c1", "pid": "42", "bundle": str(tmp_path), "rootfs": f"{tmp_path}/rootfs", "status": "created"}
    assert render("{{pid}}:{{ id }}:{{rootfs}}", state, facts) == f"42:c1:{tmp_path}/rootfs"
    assert render('{{annotation "k"}}-{{ annotation "missing" }}', state, facts) == "v-"
    assert render("no placeholders", state, facts) == "no placeholders"


def test_hook_is_executed_with_filled_arguments(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    out = tmp_path / "out.txt"
    state = json.dumps({"id": "c9", "pid": 1234, "bundle": str(tmp_path), "status": "creating"})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pycontainerd",
            "oci-hook",
            "--",
            "/bin/sh",
            "-c",
            f"echo {{{{pid}}}} {{{{rootfs}}}} > {out}",
        ],
        input=state.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().strip() == f"1234 {tmp_path}/rootfs"


def test_hook_errors_are_clear() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pycontainerd", "oci-hook", "--", "/bin/true"],
        input=b"not json",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert b"invalid container state" in result.stderr
