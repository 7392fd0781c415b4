"""``containerd-shim-wasmtime-v1``: the wasm shim binary (runtime ``io.containerd.wasmtime.v1``).

The runtime v2 protocol, as the runc shim speaks it: ``start`` (in the bundle, with
containerd's flags) starts or reuses the shim of the task's group, prints its ttrpc address
and exits; ``delete`` cleans up after a shim that died. The serving process is forked by a
template that has the shim and wasmtime imported (:mod:`~pycontainerd.wasm_shim.template`);
``PYCONTAINERD_WASM_NO_TEMPLATE=1`` forks in place instead.

Containers whose spec carries one of :data:`GROUP_ANNOTATIONS` share one shim process per
group value (a pod, or any group a client names); the others get a shim each.
"""

from __future__ import annotations

# Only the standard library (and socket_in_use) at module level: ``start`` must stay cheap.
import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pycontainerd.server.listen import socket_in_use

NAME = "containerd-shim-wasmtime-v1"
SOCKET_DIR = "/run/pycontainerd/s"
GROUP_ANNOTATIONS = ("io.containerd.wasmtime.v1.group", "io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
NO_TEMPLATE_ENV = "PYCONTAINERD_WASM_NO_TEMPLATE"
ADDRESS_ENV = "GRPC_ADDRESS"
PID_FILE = "init.pid"


def _install_tag() -> str:
    """The installation a template belongs to (it forks the code it imported)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return hashlib.sha256(f"{sys.executable}\0{here}".encode()).hexdigest()[:12]


TEMPLATE_SOCKET = f"/run/pycontainerd/wasmtime-template-{_install_tag()}.sock"
TEMPLATE_LOCK = f"/run/pycontainerd/wasmtime-template-{_install_tag()}.lock"
TEMPLATE_MODULE = "pycontainerd.wasm_shim.template"


def socket_path(address: str, namespace: str, group: str) -> str:
    """Where the shim of ``group`` listens: stable, so the next ``start`` of the group finds it."""
    digest = hashlib.sha256(f"wasmtime/{address}/{namespace}/{group}".encode()).hexdigest()[:32]
    return os.path.join(SOCKET_DIR, digest)


def group_of(bundle: str, task_id: str) -> str:
    """The task's group (from its spec's annotations), or the task itself."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fh:
            annotations = json.load(fh).get("annotations") or {}
    except (OSError, ValueError, AttributeError):
        return task_id
    for key in GROUP_ANNOTATIONS:
        if annotations.get(key):
            return str(annotations[key])
    return task_id


def parse_args(argv: list[str]) -> argparse.Namespace:
    """containerd's shim flags (single-dash long options, as Go's flag package has them)."""
    parser = argparse.ArgumentParser(prog=NAME, allow_abbrev=False)
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


def _fork(request: dict[str, object]) -> dict[str, Any]:
    """The template forks the shim; without one (or when told not to) fork it from here."""
    if not os.environ.get(NO_TEMPLATE_ENV):
        from pycontainerd.runc_shim.zygote_client import request_fork

        reply = request_fork(request, TEMPLATE_SOCKET, module=TEMPLATE_MODULE, lock=TEMPLATE_LOCK)
        if reply is not None:
            return reply
    from pycontainerd.wasm_shim.server import fork_shim

    return fork_shim(request)


def start(args: argparse.Namespace) -> int:
    """Start (or reuse) the shim of this task's group and print its address."""
    sys.stdin.buffer.read()  # runtime options: none apply to wasm tasks
    bundle = os.getcwd()
    path = args.socket or socket_path(args.address, args.namespace, group_of(bundle, args.id))
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    if not socket_in_use(Path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a stale socket from a shim that died
        env = dict(os.environ)
        env.setdefault(ADDRESS_ENV, args.address)  # runners read wasm layers through the daemon
        request: dict[str, object] = {
            "bundle": bundle,
            "path": path,
            "namespace": args.namespace,
            "ttrpc_address": os.environ.get("TTRPC_ADDRESS", f"{args.address}.ttrpc"),
            "debug": bool(args.debug),
            "env": env,
            "protocol": "ttrpc",
        }
        reply = _fork(request)
        if not reply.get("ok"):
            print(f"shim failed to start: {reply.get('error', 'unknown error')}", file=sys.stderr)
            return 1
        with open(os.path.join(bundle, "shim.pid"), "w") as fh:
            fh.write(str(reply.get("pid", 0)))
    sys.stdout.write(f"unix://{path}")
    sys.stdout.flush()
    return 0


def start_time(pid: int) -> str:
    """The process's start time (field 22 of ``/proc/<pid>/stat``): with the PID, it names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _kill_runner(bundle: str) -> None:
    """SIGKILL the task's runner if it outlived its shim (the PID file names PID and start time)."""
    try:
        with open(os.path.join(bundle, PID_FILE)) as fh:
            pid_text, _, started = fh.read().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return
    if pid > 0 and started and start_time(pid) == started.strip():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _recorded_socket(bundle: str) -> str:
    """The socket the daemon recorded for this bundle's shim (``bootstrap.json``/``address``), or ""."""
    try:
        with open(os.path.join(bundle, "bootstrap.json"), "rb") as fh:
            return str(json.load(fh).get("address", "")).removeprefix("unix://")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(bundle, "address")) as fh:
            return fh.read().strip().removeprefix("unix://")
    except OSError:
        return ""


def delete(args: argparse.Namespace) -> int:
    """Clean up after a dead shim: kill the runner, unmount the rootfs, drop a dead socket."""
    bundle = args.bundle or os.getcwd()
    _kill_runner(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.ismount(rootfs):  # the shim unmounts it at Delete: usually nothing is left to do
        subprocess.run(["umount", "-l", rootfs], capture_output=True, timeout=30, check=False)
    path = (
        args.socket or _recorded_socket(bundle) or socket_path(args.address, args.namespace, group_of(bundle, args.id))
    )
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

        print(f"{NAME} {__version__}")
        return 0
    if args.action == "start":
        return start(args)
    if args.action == "delete":
        return delete(args)
    print(f"{NAME}: unknown action {args.action!r} (start or delete)", file=sys.stderr)
    return 2
