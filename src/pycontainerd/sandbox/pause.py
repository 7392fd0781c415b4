"""The pause program: compiled once, statically, from the C source shipped with the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from pycontainerd.errdefs import FailedPrecondition

INSTALLED = Path("/usr/local/libexec/pycontainerd/pause")
COMPILE_TIMEOUT = 120


def pause_binary(cache_dir: Path) -> Path:
    """A static pause binary: the installed one, else one compiled into ``cache_dir``."""
    if INSTALLED.is_file() and os.access(INSTALLED, os.X_OK):
        return INSTALLED
    target = cache_dir / "pause"
    if target.is_file():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise FailedPrecondition("no pause binary and no C compiler to build one (run scripts/install.sh)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    source = resources.files("pycontainerd.sandbox").joinpath("pause.c").read_text()
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        src, out = Path(tmp) / "pause.c", Path(tmp) / "pause"
        src.write_text(source)
        result = subprocess.run(
            [compiler, "-static", "-Os", "-s", "-o", str(out), str(src)],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise FailedPrecondition(f"building the pause binary failed: {result.stderr.strip()}")
        os.replace(out, target)  # atomic: concurrent builders race harmlessly
    return target
