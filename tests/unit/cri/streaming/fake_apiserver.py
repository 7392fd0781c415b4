"""Just enough of a Kubernetes API server for ``kubectl exec`` and ``kubectl port-forward``.

kubectl talks to the API server, which proxies exec/attach/port-forward upgrades to kubelet's
streaming server. This fake answers discovery and ``GET pods/<name>``, and for
``pods/<name>/exec`` and ``pods/<name>/portforward`` registers a request with our streaming
server (built from the query, as kubelet builds its CRI request) and splices the client's raw
connection onto the URL it got, rewriting only the request line. kubectl's own SPDY (spdystream)
and websocket code then talks to our server byte for byte: an independent peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pycontainerd.cri.streaming import ExecRequest, PortForwardRequest, StreamingServer
from pycontainerd.cri.streaming.http1 import format_head, parse_head

from .helpers import CONTAINER, POD

POD_NAME = "web"


def _documents() -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD_NAME, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }
    resources = [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]},
        {
            "name": "pods/exec",
            "singularName": "",
            "namespaced": True,
            "kind": "PodExecOptions",
            "verbs": ["create", "get"],
        },
        {
            "name": "pods/portforward",
            "singularName": "",
            "namespaced": True,
            "kind": "PodPortForwardOptions",
            "verbs": ["create"],
        },
    ]
    return {
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources},
        f"/api/v1/namespaces/default/pods/{POD_NAME}": pod,
    }


@dataclass
class FakeApiServer:
    """The running fake: ``url`` for ``kubectl --server``; ``upgrades`` lists the ``Upgrade`` header of each proxied request."""

    url: str = ""
    upgrades: list[str] = field(default_factory=list)


@asynccontextmanager
async def fake_apiserver(streaming: StreamingServer) -> AsyncIterator[FakeApiServer]:
    """Serve on 127.0.0.1."""
    documents = _documents()
    fake = FakeApiServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = parse_head(await reader.readuntil(b"\r\n\r\n"))
            if head.path.endswith(("/exec", "/portforward")):
                fake.upgrades.append((head.get("Upgrade") or "").lower())
                await _splice(streaming, head, reader, writer)
                return
            doc = documents.get(head.path)
            body = json.dumps(doc or {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}).encode()
            status = "200 OK" if doc else "404 Not Found"
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            writer.write(format_head(f"HTTP/1.1 {status}", headers) + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # server shutdown: end quietly (see StreamingServer._serve)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield fake
    finally:
        server.close()
        await server.wait_closed()


async def _splice(
    streaming: StreamingServer, head: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    query = head.query
    if head.path.endswith("/exec"):
        flag = {name: query.get(name) == ["true"] for name in ("stdin", "stdout", "stderr", "tty")}
        url = streaming.get_exec(ExecRequest(CONTAINER, query.get("command", []), **flag))
    else:
        url = streaming.get_port_forward(PortForwardRequest(POD, [int(p) for p in query.get("ports", [])]))
    target = urlsplit(url)
    upstream_reader, upstream_writer = await asyncio.open_connection(target.hostname, target.port)
    headers = [(k, v) for k, v in head.headers if k.lower() != "host"] + [("Host", target.netloc)]
    upstream_writer.write(format_head(f"{head.method} {target.path} HTTP/1.1", headers))

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

    try:
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
    finally:
        upstream_writer.close()
