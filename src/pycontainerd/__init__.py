"""pycontainerd: containerd, the container runtime daemon, in Python.

General layout (imports point downwards only; ``grpc`` is imported by ``services``, ``server``,
``client`` and ``cli`` alone):

* ``errdefs``, ``identifiers``, ``namespaces``, ``filters``: the vocabulary every layer shares.
* ``plugin``: typed plugin registrations, ordered by what they require.
* ``config``: the containerd-style ``config.toml`` (version 2) model.
* ``metadata``: the namespaced SQLite metadata store (one transaction per API call).
* ``ttrpc``: the ttrpc protocol spoken with runtime v2 shims.
* ``services``: thin gRPC servicers (protobuf in, core call, protobuf out).
* ``server``: the daemon that builds the plugin graph and serves gRPC and ttrpc.
* ``api``: generated protobuf modules of the wire contract (see ``scripts/gen_protos.py``).
"""

__version__ = "0.1.0"
