"""The template process: Python with the shim already imported, forking new shims on request.

Starting a Python shim from scratch costs an interpreter plus asyncio, protobuf and the shim
modules (~150 ms here, ~15 MiB of private memory). The template pays that once: ``start``
sends it one JSON line (bundle, namespace, addresses) over a unix socket; it forks, the child
forks again (so the shim is nobody's child, like a daemonised Go shim) and serves; the shim
reports ``ok <pid>`` through a pipe and the template answers the ``start`` client. Forked
shims share the template's pages copy-on-write. The template is single-threaded and never
runs an event loop itself, so forking it is safe; it exits after :data:`IDLE_EXIT` seconds
without requests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

# Pre-import everything a shim needs, so forked children start serving at once.
from pycontainerd.runc_shim import server
from pycontainerd.runc_shim.zygote_client import SOCKET

if TYPE_CHECKING:
    from collections.abc import Callable

IDLE_EXIT = 60.0
READY_TIMEOUT = 10.0


def serve_forever(path: str = SOCKET, fork: Callable[[dict[str, Any]], dict[str, object]] | None = None) -> None:
    """Accept fork requests until idle for :data:`IDLE_EXIT` seconds; ``fork`` starts one shim
    (default: this runc shim's ``server.fork_shim``; the wasm shim's template passes its own)."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)  # atomically replace a stale socket
    inode = os.stat(path).st_ino
    listener.listen(16)
    listener.settimeout(IDLE_EXIT)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            with conn:
                conn.settimeout(READY_TIMEOUT)
                try:
                    request = json.loads(conn.makefile("rb").readline())
                    if request.get("quit"):
                        conn.sendall(b'{"ok": true}\n')
                        return
                    reply = (fork or server.fork_shim)(request)
                except Exception as exc:
                    reply = {"ok": False, "error": str(exc)}
                conn.sendall(json.dumps(reply).encode() + b"\n")
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == inode:  # not a newer template's socket
                os.unlink(path)
        except OSError:
            pass


def main() -> int:
    """Run the template (started detached by the first ``start``)."""
    os.chdir("/")  # never pin the directory (a bundle) we were started from
    serve_forever(sys.argv[1] if len(sys.argv) > 1 else SOCKET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
