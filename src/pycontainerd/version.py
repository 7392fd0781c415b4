"""The version pycontainerd reports.

The ``Version`` RPC answers with the containerd API level we implement plus our own release
as semver build metadata (``v2.1.0+pycontainerd.0.1.0``): clients such as nerdctl parse it
as semver and choose features by the containerd version, and build metadata does not change
its precedence.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from pycontainerd import __version__

API_LEVEL = "2.1.0"
VERSION = f"v{API_LEVEL}+pycontainerd.{__version__}"


@functools.cache
def revision() -> str:
    """The git commit of the source tree when run from a checkout, else the release."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"pycontainerd-{__version__}"
