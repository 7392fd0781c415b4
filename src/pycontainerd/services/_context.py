"""Reading the request context (namespace, lease, deadline) from a gRPC call."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pycontainerd.namespaces import RequestContext, from_metadata

if TYPE_CHECKING:
    import grpc


def request_context(context: grpc.aio.ServicerContext[Any, Any]) -> RequestContext:
    """The namespace and lease headers of the call, plus its deadline."""
    items: Any = context.invocation_metadata() or ()
    metadata = [(m.key, m.value) for m in items]
    ctx = from_metadata(metadata)
    remaining = context.time_remaining()
    if remaining is not None:
        ctx = RequestContext(ctx.namespace, ctx.lease, time.monotonic() + remaining)
    return ctx
