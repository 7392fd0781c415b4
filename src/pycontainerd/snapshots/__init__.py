"""Snapshotter backends: where layers live on disk and how they are mounted.

Each backend implements :class:`pycontainerd.core.snapshots.Snapshotter` for one root
directory and knows nothing of namespaces, leases or gRPC (``metadata/snapshots.py`` wraps it
per namespace, ``services/snapshots.py`` serves it). Modules:

- ``storage``: the metastore every backend shares: ``<root>/metadata.db`` (SQLite) maps keys
  to numeric IDs, kinds, parents and labels; ``<root>/snapshots/<id>`` holds the data. Also
  disk usage, and crash-safe removal (rename to ``removing-<id>``, then delete).
- ``native``: every active snapshot is a full copy of its parent; bind mounts only.
- ``overlay``: every snapshot is one overlayfs layer; lowerdirs are the parent chain.
- ``mount``: mount(2)/umount2(2) of ``Mount`` lists, compacting long overlay lowerdirs.
- ``plugin``: the ``io.containerd.snapshotter.v1`` registrations (``native``, ``overlayfs``).

The life of a snapshot: ``prepare(key, parent)`` -> ACTIVE, mounted read-write and filled
(by the differ or a container); ``commit(name, key)`` -> COMMITTED under ``name``, the same
directory, now read-only by convention; ``view(key, parent)`` -> VIEW, a read-only mount of
a committed chain; ``remove`` only once no snapshot names it as parent.
"""
