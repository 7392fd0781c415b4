"""Reading the request context (namespace, lease, deadline) from a gRPC call."""

from __future__ import annotations

import time

import grpc

from pycontainerd.namespaces import RequestContext, from_metadata


def request_context(context: grpc.aio.ServicerContext[object, object]) -> RequestContext:
    """The namespace and lease headers of the call, plus its deadline."""
    metadata = [(m.key, m.value) for m in (context.invocation_metadata() or ())]
    ctx = from_metadata(metadata)
    remaining = context.time_remaining()
    if remaining is not None:
        ctx = RequestContext(ctx.namespace, ctx.lease, time.monotonic() + remaining)
    return ctx
