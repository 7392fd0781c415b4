"""The version pycontainerd reports.

The ``Version`` RPC answers with the containerd API level we implement plus our own release
as semver build metadata (``v2.1.0+pycontainerd.0.1.0``): clients such as nerdctl parse it
as semver and choose features by the containerd version, and build metadata does not change
its precedence.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pycontainerd import __version__

API_LEVEL = "2.1.0"
VERSION = f"v{API_LEVEL}+pycontainerd.{__version__}"


@functools.cache
def revision() -> str:
    """The git commit of the source tree when run from a checkout, else the release.

    Read from ``.git`` directly: no ``git`` process on the daemon's first Version call.
    """
    for directory in Path(__file__).resolve().parents:
        git = directory / ".git"
        if git.is_dir():
            return _read_head(git) or f"pycontainerd-{__version__}"
    return f"pycontainerd-{__version__}"


def _read_head(git: Path) -> str:
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[len("ref: ") :]
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        pass
    return ""
