"""Serve a differ over gRPC, as a ``[proxy_plugins]`` differ for pycontainerd (or containerd).

``python -m pycontainerd.diff.service --address SOCK --content-address DAEMON_SOCK`` serves
``containerd.services.diff.v1.Diff`` on a unix socket, applying and creating layers with the
same code as the built-in walking differ, in this process.

Where the bytes come from: a differ gets a descriptor, not a blob. Like containerd's remote
differs, this one reads the layer from the daemon's own Content API (``--content-address``,
the daemon's gRPC socket), in the namespace and under the lease the daemon sent with the call
(``containerd-namespace`` / ``containerd-lease`` metadata): one streaming ``Read`` per layer,
decompressed and extracted as it arrives. ``Diff`` writes the layer it creates back through
``Content.Write`` in the same namespace and lease. Mount paths must be valid here: the server
runs on the daemon's host, as root.

Every ``Apply`` is logged (``apply <digest> ...``) at info level on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2 as pb
from pycontainerd.api.containerd.services.diff.v1 import diff_pb2_grpc as pb_grpc
from pycontainerd.content.proxy import MAX_MESSAGE, ProxyContentStore
from pycontainerd.core.content import parse_digest
from pycontainerd.core.images import Descriptor
from pycontainerd.diff.apply import apply_stream
from pycontainerd.diff.layer import COMPRESSORS, MEDIA_TYPE_GZIP, UNCOMPRESSED_LABEL, make_layer
from pycontainerd.diff.proxy import descriptor_to_pb
from pycontainerd.diff.walking import copy_file_into
from pycontainerd.errdefs import AlreadyExists, InvalidArgument, Unimplemented
from pycontainerd.namespaces import RequestContext, namespace_required
from pycontainerd.services._context import request_context
from pycontainerd.services._interceptor import ErrorInterceptor
from pycontainerd.services.diff import mount_from_pb

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.core.snapshots import Mount

log = logging.getLogger("pycontainerd.diff.service")


class DiffServer(pb_grpc.DiffServicer):
    """The Diff API, reading and writing blobs through a Content API client."""

    def __init__(self, content: ProxyContentStore) -> None:
        self._content = content
        self.applied = 0

    def _store(self, ctx: RequestContext) -> ProxyContentStore:
        namespace_required(ctx)
        return self._content.with_context(ctx)

    async def Apply(self, request: pb.ApplyRequest, context: Any) -> pb.ApplyResponse:
        ctx = request_context(context)
        store = self._store(ctx)
        if not request.HasField("diff"):
            raise InvalidArgument("diff descriptor required")
        digest = parse_digest(request.diff.digest)
        media_type = request.diff.media_type
        mounts = [mount_from_pb(m) for m in request.mounts]
        log.info("apply %s (%s) onto %d mount(s) in namespace %s", digest, media_type, len(mounts), ctx.namespace)

        def run() -> Descriptor:
            with store.reader(digest) as raw:
                applied = apply_stream(raw, media_type, mounts)
            if request.sync_fs:
                os.sync()
            return Descriptor(applied.media_type, applied.digest, applied.size)

        done = await asyncio.to_thread(run)
        self.applied += 1
        log.info("applied %s: %s, %d bytes", digest, done.digest, done.size)
        return pb.ApplyResponse(applied=descriptor_to_pb(done))

    async def Diff(self, request: pb.DiffRequest, context: Any) -> pb.DiffResponse:
        ctx = request_context(context)
        store = self._store(ctx)
        media_type = request.media_type or MEDIA_TYPE_GZIP
        if media_type not in COMPRESSORS:
            raise Unimplemented(f"unsupported diff media type: {media_type}")
        lower = [mount_from_pb(m) for m in request.left]
        upper = [mount_from_pb(m) for m in request.right]
        ref = request.ref or f"diff-{uuid.uuid4().hex}"
        log.info("diff into %s (%s) in namespace %s", ref, media_type, ctx.namespace)
        desc = await asyncio.to_thread(_diff_into, store, lower, upper, media_type, ref, dict(request.labels))
        return pb.DiffResponse(diff=descriptor_to_pb(desc))


def _diff_into(
    store: ProxyContentStore,
    lower: Sequence[Mount],
    upper: Sequence[Mount],
    media_type: str,
    ref: str,
    labels: dict[str, str],
) -> Descriptor:
    with tempfile.TemporaryDirectory(prefix="pycontainerd-diffsvc-") as tmp:
        layer = Path(tmp) / "layer"
        made = make_layer(lower, upper, layer, media_type)
        if made.compressed:
            labels[UNCOMPRESSED_LABEL] = made.uncompressed_digest
        try:
            writer = store.writer(ref, total=made.size, expected=made.digest)
        except AlreadyExists:
            return Descriptor(media_type, made.digest, made.size)
        try:
            copy_file_into(layer, writer)
            writer.commit(made.size, made.digest, labels)
        except AlreadyExists:
            pass
        finally:
            writer.close()
    return Descriptor(media_type, made.digest, made.size)


async def serve(content_address: str, address: str) -> None:
    """Serve the Diff API on the unix socket ``address`` until SIGTERM or SIGINT."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address)
    content = ProxyContentStore(content_address)
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
    )
    pb_grpc.add_DiffServicer_to_server(DiffServer(content), server)
    server.add_insecure_port(f"unix:{address}")
    await server.start()
    log.info("serving the Diff API on %s, reading content from %s", address, content_address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(1)
        content.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)


def main(argv: list[str] | None = None) -> int:
    """Run a differ as a gRPC proxy plugin."""
    parser = argparse.ArgumentParser(prog="python -m pycontainerd.diff.service", description=__doc__)
    parser.add_argument("--address", required=True, help="unix socket to serve on")
    parser.add_argument(
        "--content-address", required=True, help="the daemon's gRPC socket, whose Content API holds the layers"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.content_address, args.address))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
