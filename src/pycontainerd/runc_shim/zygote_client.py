"""Talking to the template process from a short-lived ``start`` (standard library only)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any


def _install_tag() -> str:
    """Which installation a template belongs to: a template forks the code it imported, so two
    checkouts (or an upgrade) must never share one."""
    import hashlib

    here = os.path.dirname(os.path.abspath(__file__))
    return hashlib.sha256(f"{sys.executable}\0{here}".encode()).hexdigest()[:12]


SOCKET = f"/run/pycontainerd/pyrunc-template-{_install_tag()}.sock"
LOCK = f"/run/pycontainerd/pyrunc-template-{_install_tag()}.lock"
SPAWN_TIMEOUT = 10.0
REQUEST_TIMEOUT = 15.0


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


TEMPLATE_MODULE = "pycontainerd.runc_shim.zygote"


def _spawn_template(path: str, module: str = TEMPLATE_MODULE, lock_path: str = LOCK) -> socket.socket | None:
    """Start the template (``python -m module path``, once, under a lock) and connect to it."""
    os.makedirs(os.path.dirname(lock_path), mode=0o711, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)
        if sock is not None:
            return sock  # another start spawned it meanwhile
        subprocess.Popen(
            [sys.executable, "-m", module, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        deadline = time.monotonic() + SPAWN_TIMEOUT
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock is not None:
                return sock
            time.sleep(0.005)
    return None


def request_fork(
    request: dict[str, object], path: str = SOCKET, *, module: str = TEMPLATE_MODULE, lock: str = LOCK
) -> dict[str, Any] | None:
    """Ask the template to fork a shim; None when no template answers (the caller forks itself).

    ``module`` and ``lock`` name another shim's template (the wasm shim has its own)."""
    sock = _connect(path) or _spawn_template(path, module, lock)
    if sock is None:
        return None
    with contextlib.closing(sock):
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = sock.makefile("rb").readline()
        except OSError:
            return None
    if not line:
        return None  # the template went away (idle exit racing with us): fork ourselves
    reply: dict[str, Any] = json.loads(line)
    return reply


def stop_template(path: str = SOCKET) -> bool:
    """Ask a running template to exit now (it also exits by itself when idle)."""
    sock = _connect(path)
    if sock is None:
        return False
    with contextlib.closing(sock):
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.sendall(b'{"quit": true}\n')
            return bool(sock.makefile("rb").readline())
        except OSError:
            return False
