"""Core layers must not pull in grpc: they stay testable and usable without it."""

from __future__ import annotations

import subprocess
import sys


def test_core_does_not_import_grpc() -> None:
    code = (
        "import sys\n"
        "import pycontainerd.metadata, pycontainerd.config, pycontainerd.plugin.graph, pycontainerd.filters\n"
        "import pycontainerd.events, pycontainerd.errdefs, pycontainerd.namespaces\n"
        "bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"grpc imported by core modules: {out.stdout}"
