"""The checked-in generated modules are exactly what scripts/gen_protos.py produces."""

from __future__ import annotations

import subprocess
import sys

from tests.wire._descriptors import REPO


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
