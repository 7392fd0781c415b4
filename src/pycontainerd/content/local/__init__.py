"""The local content store (containerd's ``plugins/content/local``).

``store.py`` owns the directory tree (blobs, ingest directories, recovery on open),
``writer.py`` one ingest and its open writer, ``locks.py`` the in-process ref locks.
``plugin.py`` registers it as ``io.containerd.content.v1.content``.
"""

from __future__ import annotations

from pycontainerd.content.local.store import LocalStore as LocalStore
from pycontainerd.content.local.writer import Writer as Writer

__all__ = ["LocalStore", "Writer"]
