"""Thin gRPC servicers: protobuf in, a core call, protobuf out.

Each module registers one containerd API service as an ``io.containerd.grpc.v1`` plugin.
Errors are never handled here one by one: :mod:`_status` holds the single table from
:mod:`pycontainerd.errdefs` kinds to gRPC status codes, applied by an interceptor to every
call, and :func:`_context.request_context` reads the namespace and lease headers.
"""
