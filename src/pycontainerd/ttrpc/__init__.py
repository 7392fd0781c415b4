"""ttrpc: containerd's lightweight RPC protocol, spoken between the daemon and its shims.

Wire-compatible with github.com/containerd/ttrpc (unary calls; streaming is not used by
the runtime v2 task API and is answered with ``INVALID_ARGUMENT``).

Layers, each usable and testable on its own:

* :mod:`.frames` - sans-I/O framing: a 10-byte header (length u32 BE, stream id u32 BE,
  type u8, flags u8) then at most 4 MiB of data; an incremental decoder.
* :mod:`.protocol` - sans-I/O semantics: status codes, :class:`TTRPCError`, the
  ``ttrpc.Request``/``ttrpc.Response`` envelopes, metadata, stream-id rules.
* :mod:`.server` - asyncio unix-socket server; one task per request.
* :mod:`.client` - asyncio client; concurrent calls multiplexed on odd stream ids.

Method messages are protobuf messages; the envelope is ``proto/ttrpc/ttrpc.proto``. This
package depends only on the standard library, protobuf and its generated envelope module,
so that shims and tools can use it without the rest of pycontainerd.
"""

from __future__ import annotations

from .client import Client
from .frames import MAX_MESSAGE_LENGTH, FrameError, FrameTooLargeError
from .protocol import Code, Metadata, MetadataLike, TTRPCConnectionError, TTRPCError, default_error_to_status
from .server import CallContext, ErrorToStatus, Handler, MethodTable, PeerCredentials, Server

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "CallContext",
    "Client",
    "Code",
    "ErrorToStatus",
    "FrameError",
    "FrameTooLargeError",
    "Handler",
    "Metadata",
    "MetadataLike",
    "MethodTable",
    "PeerCredentials",
    "Server",
    "TTRPCConnectionError",
    "TTRPCError",
    "default_error_to_status",
]
