"""The garbage-collection scheduler (``io.containerd.gc.v1.scheduler``).

The mark-and-sweep itself lives in :mod:`pycontainerd.metadata.gc`; this package decides
*when* to run it, with containerd's knobs.
"""
