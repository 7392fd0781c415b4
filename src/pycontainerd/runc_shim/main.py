"""``containerd-shim-pyrunc-v2``: the shim binary.

``start`` forks the long-lived shim server (setsid: it outlives the daemon), waits until it
listens, prints its address and exits; ``delete`` cleans up after a shim that died. Any
other invocation is an error. Flags are containerd's shim flags.

The Task API is served over ttrpc (``start`` prints ``unix://<socket>``) unless the
environment asks for gRPC with ``PYCONTAINERD_SHIM_PROTOCOL=grpc`` (set by pycontainerd from a
runtime's ``protocol`` config); ``start`` then prints containerd 2.x's bootstrap JSON,
``{"version": 3, "address": "<socket>", "protocol": "grpc"}``.
"""

from __future__ import annotations

# Only the standard library at module level: ``start`` must stay cheap (the heavy shim code
# lives in server.py, pre-imported by the template process).
import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pycontainerd.server.listen import socket_in_use

SOCKET_DIR = "/run/pycontainerd/s"
RUNC_ROOT = "/run/pycontainerd/runc"
PROTOCOL_ENV = "PYCONTAINERD_SHIM_PROTOCOL"
PROTOCOLS = ("ttrpc", "grpc")


def socket_path(address: str, namespace: str, group: str, protocol: str = "ttrpc") -> str:
    """Where a shim of ``group`` listens: stable, so a second ``start`` finds the same shim.

    A group's gRPC shim and ttrpc shim are different processes, so they get different sockets.
    """
    key = f"{address}/{namespace}/{group}" if protocol == "ttrpc" else f"{address}/{namespace}/{group}/{protocol}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return os.path.join(SOCKET_DIR, digest)


def bootstrap(path: str, protocol: str) -> str:
    """What ``start`` prints: a bare ttrpc address, or containerd 2.x's bootstrap JSON for gRPC
    (Task API v3; the address a plain socket path, as containerd dials it)."""
    if protocol == "ttrpc":
        return f"unix://{path}"
    return json.dumps({"version": 3, "address": path, "protocol": protocol})


GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")


def group_of(bundle: str, task_id: str) -> str:
    """Which shim serves this task: its group (a pod, or an explicit group) or the task itself.

    Like the Go shim, containers of one group share one shim process, which saves a shim's
    memory per container.
    """
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            annotations = json.load(fh).get("annotations") or {}
    except (OSError, ValueError):
        return task_id
    for key in GROUP_ANNOTATIONS:
        if annotations.get(key):
            return str(annotations[key])
    return task_id


def parse_args(argv: list[str]) -> argparse.Namespace:
    """containerd's shim flags (single-dash long options, as Go's flag package has them)."""
    parser = argparse.ArgumentParser(prog="containerd-shim-pyrunc-v2", allow_abbrev=False)
    parser.add_argument("-namespace", default="default")
    parser.add_argument("-address", default="")
    parser.add_argument("-publish-binary", dest="publish_binary", default="")
    parser.add_argument("-id", default="")
    parser.add_argument("-bundle", default="")
    parser.add_argument("-socket", default="")
    parser.add_argument("-debug", action="store_true")
    parser.add_argument("-v", dest="version", action="store_true")
    parser.add_argument("action", nargs="?", default="")
    return parser.parse_args(argv)


def _ask_template(request: dict[str, object]) -> dict[str, Any] | None:
    """Have the template process fork the shim; None if no template can be had."""
    from pycontainerd.runc_shim.zygote_client import request_fork

    return request_fork(request)


def _fork_directly(request: dict[str, object]) -> dict[str, Any]:
    """Fork the shim from this process (slower: it imports the whole shim first)."""
    from pycontainerd.runc_shim.server import fork_shim

    return fork_shim(request)


def _stop_shim(pid: int, timeout: float = 5.0) -> None:
    """Stop a shim we just started (serving the wrong protocol) and wait until it is gone: it
    removes its socket as it exits, which must happen before another shim binds the path."""
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def start(args: argparse.Namespace) -> int:
    """Start (or reuse) the shim for this task and print its address."""
    sys.stdin.buffer.read()  # runtime options (unused by this shim)
    protocol = os.environ.get(PROTOCOL_ENV) or "ttrpc"
    if protocol not in PROTOCOLS:
        print(f"{PROTOCOL_ENV}={protocol!r}: unknown protocol (ttrpc or grpc)", file=sys.stderr)
        return 1
    bundle = os.getcwd()
    path = args.socket or socket_path(args.address, args.namespace, group_of(bundle, args.id), protocol)
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    if socket_in_use(Path(path)):
        # The group's shim is already running: it serves this task too.
        sys.stdout.write(bootstrap(path, protocol))
        sys.stdout.flush()
        return 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket from a shim that died
    request: dict[str, object] = {
        "bundle": bundle,
        "path": path,
        "namespace": args.namespace,
        "ttrpc_address": os.environ.get("TTRPC_ADDRESS", f"{args.address}.ttrpc"),
        "debug": bool(args.debug),
        "env": dict(os.environ),
        "protocol": protocol,
    }
    reply = None if os.environ.get("PYRUNC_NO_TEMPLATE") else _ask_template(request)
    if reply is not None and reply.get("ok") and reply.get("protocol", "ttrpc") != protocol:
        # A template left running by an older installation knows only ttrpc: stop what it
        # started and fork here instead.
        _stop_shim(int(reply.get("pid", 0)))
        reply = None
    if reply is None:
        reply = _fork_directly(request)
    if not reply.get("ok"):
        print(f"shim failed to start: {reply.get('error', 'unknown error')}", file=sys.stderr)
        return 1
    with open(os.path.join(bundle, "shim.pid"), "w") as fh:
        fh.write(str(reply.get("pid", 0)))
    sys.stdout.write(bootstrap(path, protocol))
    sys.stdout.flush()
    return 0


def _recorded_socket(bundle: str) -> str:
    """The socket the daemon recorded for this bundle's shim (``bootstrap.json``), or ""."""
    try:
        with open(os.path.join(bundle, "bootstrap.json"), "rb") as fh:
            address = str(json.load(fh).get("address", ""))
    except (OSError, ValueError, AttributeError):
        return ""
    return address.removeprefix("unix://")


def delete(args: argparse.Namespace) -> int:
    """Clean up after a dead shim: kill and delete the container, unmount its rootfs."""
    bundle = args.bundle or os.getcwd()
    root = os.path.join(RUNC_ROOT, args.namespace)
    with contextlib.suppress(OSError), open(os.path.join(bundle, "runc-root")) as fh:
        root = fh.read().strip() or root  # the root the task was created with
    subprocess.run(["runc", "--root", root, "delete", "--force", args.id], capture_output=True, timeout=30, check=False)
    subprocess.run(["umount", "-l", os.path.join(bundle, "rootfs")], capture_output=True, timeout=30, check=False)
    # A shim that died leaves its socket behind; remove it unless another task's shim lives there.
    path = args.socket or _recorded_socket(bundle)
    path = path or socket_path(args.address, args.namespace, group_of(bundle, args.id))
    if not socket_in_use(Path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    from pycontainerd import pbtime
    from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2

    reply = shim_pb2.DeleteResponse(pid=0, exit_status=128 + signal.SIGKILL, exited_at=pbtime.now())
    sys.stdout.buffer.write(reply.SerializeToString())
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the shim command."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        from pycontainerd import __version__

        print(f"containerd-shim-pyrunc-v2 {__version__}")
        return 0
    if args.action == "start":
        return start(args)
    if args.action == "delete":
        return delete(args)
    print(f"containerd-shim-pyrunc-v2: unknown action {args.action!r} (start or delete)", file=sys.stderr)
    return 2
