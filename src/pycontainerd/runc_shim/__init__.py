"""containerd-shim-pyrunc-v2: our runtime v2 shim, driving runc.

:mod:`reaper` is the one place that waits for children (the shim is a subreaper, so container
processes re-parented to it are reaped there too); :mod:`runc` wraps the runc CLI on top of
it; :mod:`process` holds the explicit state machine of init and exec processes.
"""
