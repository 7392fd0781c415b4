"""A differ served by another process (``[proxy_plugins]`` of type ``diff``).

The other end speaks ``containerd.services.diff.v1.Diff`` on a unix socket (a process made with
:mod:`pycontainerd.diff.service`, or any server of that API). Calls carry the caller's
namespace and lease as gRPC metadata (``containerd-namespace``, ``containerd-lease``): the
remote differ needs them to read the layer blob from this daemon's Content API, and to write
the layers it creates there under the caller's lease.

Calls are asynchronous (``grpc.aio``): while a remote differ applies a layer it reads the blob
back from this daemon, whose event loop must stay free to serve it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import descriptor_pb2, mount_pb2
from pycontainerd.content.proxy import CHANNEL_OPTIONS, native_error
from pycontainerd.core.images import Descriptor
from pycontainerd.namespaces import GRPC_LEASE_HEADER, GRPC_NAMESPACE_HEADER

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pycontainerd.core.snapshots import Mount
    from pycontainerd.namespaces import RequestContext

_PATH_OPTIONS = ("lowerdir", "upperdir", "workdir")


def mount_to_pb(m: Mount) -> mount_pb2.Mount:
    """A mount for the wire: paths relative to ``chdir`` (which cannot cross it) made absolute."""
    if not m.chdir:
        return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))

    def absolute(path: str) -> str:
        return path if not path or os.path.isabs(path) else os.path.join(m.chdir, path)

    options = []
    for opt in m.options:
        key, sep, value = opt.partition("=")
        if sep and key in _PATH_OPTIONS:
            opt = f"{key}={':'.join(absolute(p) for p in value.split(':'))}"
        options.append(opt)
    # Only the source of a bind or loop mount is a path; an overlay's is a name.
    is_path = m.type == "bind" or any(o in ("bind", "rbind", "loop") for o in m.options)
    source = absolute(m.source) if is_path else m.source
    return mount_pb2.Mount(type=m.type, source=source, target=m.target, options=options)


def descriptor_to_pb(desc: Descriptor) -> descriptor_pb2.Descriptor:
    """Core descriptor to protobuf."""
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type, digest=desc.digest, size=desc.size, annotations=desc.annotations
    )


def descriptor_from_pb(d: descriptor_pb2.Descriptor) -> Descriptor:
    """Protobuf descriptor to core."""
    return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


def call_metadata(ctx: RequestContext) -> tuple[tuple[str, str], ...]:
    """The namespace and lease headers of ``ctx``, for an outgoing call."""
    headers = []
    if ctx.namespace:
        headers.append((GRPC_NAMESPACE_HEADER, ctx.namespace))
    if ctx.lease:
        headers.append((GRPC_LEASE_HEADER, ctx.lease))
    return tuple(headers)


def _timeout(ctx: RequestContext) -> float | None:
    return None if ctx.deadline is None else max(0.0, ctx.deadline - time.monotonic())


class ProxyDiffer:
    """The :class:`~pycontainerd.core.diff.Differ` protocol over a Diff API client."""

    in_process = False

    def __init__(self, address: str, name: str) -> None:
        target = address if address.startswith("unix:") else f"unix:{address}"
        self.name = name
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.DiffStub(self._channel)

    async def apply(
        self,
        ctx: RequestContext,
        desc: Descriptor,
        mounts: Sequence[Mount],
        *,
        sync_fs: bool = False,
        payloads: Mapping[str, Any] | None = None,
    ) -> Descriptor:
        """Ask the remote to apply the blob ``desc`` (it reads it from our content store)."""
        request = pb.ApplyRequest(diff=descriptor_to_pb(desc), mounts=[mount_to_pb(m) for m in mounts], sync_fs=sync_fs)
        for key, value in (payloads or {}).items():
            request.payloads[key].CopyFrom(value)
        try:
            reply = await self._stub.Apply(request, metadata=call_metadata(ctx), timeout=_timeout(ctx))
        except grpc.RpcError as exc:
            raise native_error(exc) from None
        return descriptor_from_pb(reply.applied)

    async def compare(
        self,
        ctx: RequestContext,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Ask the remote to write the diff of ``lower`` -> ``upper`` into our content store."""
        request = pb.DiffRequest(
            left=[mount_to_pb(m) for m in lower],
            right=[mount_to_pb(m) for m in upper],
            media_type=media_type,
            ref=ref,
            labels=dict(labels or {}),
        )
        try:
            reply = await self._stub.Diff(request, metadata=call_metadata(ctx), timeout=_timeout(ctx))
        except grpc.RpcError as exc:
            raise native_error(exc) from None
        return descriptor_from_pb(reply.diff)

    async def close(self) -> None:
        """Close the connection."""
        await self._channel.close()
