"""The CRI streaming server: exec, attach and port-forward sessions behind one-time URLs.

This is kubelet's ``pkg/cri/streaming`` as containerd's CRI plugin runs it. The CRI RPCs Exec,
Attach and PortForward do no streaming themselves: they register the request with
:meth:`StreamingServer.get_exec` (``get_attach``, ``get_port_forward``) and return the URL it
gives back. The client (kubelet via the API server, crictl, a test) connects to that URL, upgrades
the HTTP connection to SPDY/3.1 or to a websocket, and the server calls the :class:`Runtime`
with plain byte streams.

Layout, from the wire up; the protocol modules do no I/O (h11 style: feed bytes, get events,
collect bytes to send), the ``*_conn`` modules are their small asyncio drivers:

- :mod:`.http1`: parse the one request head, build error and ``101`` responses.
- :mod:`.spdy_frames`: SPDY/3.1 frame codec and zlib header compression with the SPDY/3
  dictionary. :mod:`.spdy_session`: streams, half-closes, flow-control windows, pings, GOAWAY.
  :mod:`.spdy_conn`: socket driver and :class:`~.spdy_conn.SpdyStream` objects.
- :mod:`.ws_frames`: RFC 6455 handshake values and framing. :mod:`.ws_conn`: message driver and
  kubelet's channel multiplexing (``channel.k8s.io``, base64, v4, v5 close signal).
- :mod:`.remotecommand`: exec/attach sessions (stream collection, ``metav1.Status`` on the
  error stream, protocol versions v1 to v5). :mod:`.portforward`: SPDY stream pairs and
  websocket channel pairs. :mod:`.status`: the Status and port-forward error JSON.
- :mod:`.tokens`: the one-time request cache. :mod:`.pipe`: buffers, resize decoding, idle timer.
- :mod:`.server`: :class:`StreamingServer`, which routes, negotiates and hands connections over.
- :mod:`.api`: the request records, the stream interfaces and the :class:`Runtime` protocol:
  everything the CRI service touches.

Typical use::

    server = StreamingServer(runtime, StreamingConfig(address="127.0.0.1", port=0))
    await server.start()
    url = server.get_exec(ExecRequest(container_id, ["sh"], stdin=True, tty=True, stderr=False))
    ...
    await server.stop()
"""

from __future__ import annotations

from pycontainerd.cri.streaming.api import AttachRequest as AttachRequest
from pycontainerd.cri.streaming.api import ByteReader as ByteReader
from pycontainerd.cri.streaming.api import ByteWriter as ByteWriter
from pycontainerd.cri.streaming.api import DuplexStream as DuplexStream
from pycontainerd.cri.streaming.api import ExecRequest as ExecRequest
from pycontainerd.cri.streaming.api import PortForwardRequest as PortForwardRequest
from pycontainerd.cri.streaming.api import Runtime as Runtime
from pycontainerd.cri.streaming.api import Streams as Streams
from pycontainerd.cri.streaming.api import TerminalSize as TerminalSize
from pycontainerd.cri.streaming.server import StreamingConfig as StreamingConfig
from pycontainerd.cri.streaming.server import StreamingServer as StreamingServer

__all__ = [
    "AttachRequest",
    "ByteReader",
    "ByteWriter",
    "DuplexStream",
    "ExecRequest",
    "PortForwardRequest",
    "Runtime",
    "StreamingConfig",
    "StreamingServer",
    "Streams",
    "TerminalSize",
]
