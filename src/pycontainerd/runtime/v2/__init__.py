"""Runtime v2, daemon side: bundles, shim processes, and the task manager.

A task's bundle lives at ``<state>/<ns>/<id>`` (``config.json``, ``rootfs/``, the ``log``
FIFO, ``work`` -> ``<root>/<ns>/<id>``). The shim binary is started with ``start`` in that
directory; it answers with its address (ttrpc, or gRPC per its bootstrap JSON) and keeps
running after the daemon exits. The address and protocol are saved in the bundle
(``bootstrap.json``, ``address``), so a restarted daemon reconnects to every shim it finds there.
"""
