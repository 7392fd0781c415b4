"""The daemon: configuration in, plugins initialised in order, gRPC and ttrpc served.

:mod:`daemon` owns start-up and shutdown; :mod:`listen` prepares unix sockets;
:mod:`logging` sets up containerd-style structured logs.
"""
