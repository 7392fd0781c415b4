"""The request context: which namespace and lease a call acts in.

containerd carries these on its Go context and mirrors them into request metadata; we pass a
:class:`RequestContext` explicitly as the first argument of every core call. The header names
are the wire facts clients send.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pycontainerd import identifiers
from pycontainerd.errdefs import FailedPrecondition

GRPC_NAMESPACE_HEADER = "containerd-namespace"
TTRPC_NAMESPACE_HEADER = "containerd-namespace-ttrpc"
GRPC_LEASE_HEADER = "containerd-lease"
NAMESPACE_ENV = "CONTAINERD_NAMESPACE"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a single API call acts on.

    Attributes:
        namespace: the namespace named by the caller, or ``""`` when none was sent.
        lease: the lease new objects are attached to, or ``""``.
        deadline: absolute ``time.monotonic()`` deadline, or ``None``.
    """

    namespace: str = ""
    lease: str = ""
    deadline: float | None = None

    def with_namespace(self, namespace: str) -> RequestContext:
        """A copy acting in ``namespace``."""
        return replace(self, namespace=namespace)


def namespace_required(ctx: RequestContext) -> str:
    """The namespace of ``ctx``, validated; FailedPrecondition when absent (as containerd)."""
    if not ctx.namespace:
        raise FailedPrecondition("namespace is required: no namespace found in context")
    return identifiers.validate(ctx.namespace)


def from_metadata(
    metadata: Mapping[str, Sequence[str]] | Sequence[tuple[str, str | bytes]],
) -> RequestContext:
    """Build a context from request metadata (gRPC or ttrpc).

    Accepts either a mapping of header to values or gRPC's sequence of ``(key, value)`` pairs.
    The first value of each header wins, as containerd reads them.
    """
    values: dict[str, str] = {}
    items: list[tuple[str, str | bytes]] = []
    if isinstance(metadata, Mapping):
        for key, vals in metadata.items():
            items.extend((key, v) for v in vals)
    else:
        items = list(metadata)
    for key, value in items:
        key = key.lower()
        if key not in values:
            values[key] = value.decode() if isinstance(value, bytes) else value
    namespace = values.get(GRPC_NAMESPACE_HEADER) or values.get(TTRPC_NAMESPACE_HEADER, "")
    return RequestContext(namespace=namespace, lease=values.get(GRPC_LEASE_HEADER, ""))


def default_namespace() -> str:
    """The namespace a client uses when none is given: ``$CONTAINERD_NAMESPACE`` or ``default``."""
    return os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
