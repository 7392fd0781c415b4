"""The namespaced metadata store (SQLite), containerd's ``core/metadata`` in Python.

:mod:`schema` documents the on-disk layout and holds the migrations; :mod:`db` owns the
connection and the one-transaction-per-call helpers; one module per object kind wraps the
tables with namespace checks (``namespaces`` here; content, images, containers, snapshots,
leases and sandboxes follow the same shape).
"""

from pycontainerd.metadata.db import DB as DB
from pycontainerd.metadata.namespaces import NamespaceStore as NamespaceStore

__all__ = ["DB", "NamespaceStore"]
