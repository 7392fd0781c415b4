"""Content storage: immutable blobs addressed by digest, written through resumable ingests.

The pieces, bottom up (containerd's names in brackets):

* ``local/`` [``plugins/content/local``]: the built-in backend. Blobs are files under
  ``blobs/<algorithm>/<hex>``; an ingest is a directory under ``ingest/`` named by the hash
  of its ref, holding the bytes received so far. A writer appends to an ingest and hashes as
  it goes; commit checks size and digest, fsyncs, and renames the data into ``blobs/``, so a
  blob is never visible half written. An ingest outlives its writer, the client and the
  daemon (``kill -9`` included): the next writer for the ref re-hashes what is on disk and
  carries on from there. Refs are locked in memory, one writer at a time.
* ``proxy.py`` [``core/content/proxy``]: the same backend interface over containerd's Content
  gRPC API, for a store served by another process (``[proxy_plugins]`` of type ``content``);
  ``service.py`` serves a local store that way. A proxy has no files: ``reader.py``
  (:func:`~pycontainerd.content.reader.open_blob`) opens a blob of any backend as a stream.
* ``metadata/content.py`` [``core/metadata/content.go``]: wraps the backend per namespace,
  adds labels, leases and events, and shares blobs across namespaces.
* ``services/content.py`` [``plugins/services/content/contentserver``]: the gRPC edge.

The backend knows nothing of namespaces, labels or gRPC; it raises ``errdefs`` kinds, and its
behaviour is pinned by the shared suite in ``tests/conformance/content.py``.
"""
