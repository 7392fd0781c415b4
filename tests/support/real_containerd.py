"""Debian's real containerd on private paths, the referee for our shim."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.daemon import private_dir

CONTAINERD = shutil.which("containerd")


@contextlib.contextmanager
def real_containerd(extra_config: str = "", disabled: tuple[str, ...] = ()) -> Iterator[Path]:
    """Start containerd (CRI disabled) with root, state and sockets in a temp dir; yields the socket.

    ``extra_config`` is appended to the config (tables only); ``disabled`` adds disabled plugins."""
    if CONTAINERD is None:
        raise RuntimeError("Debian's containerd is not installed: apt-get install containerd")
    with private_dir("rcd-") as base:
        sock = base / "c.sock"
        config = base / "config.toml"
        config.write_text(
            f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
            f"disabled_plugins = {json.dumps(['io.containerd.grpc.v1.cri', *disabled])}\n"
            f'[grpc]\naddress = "{sock}"\n[ttrpc]\naddress = "{sock}.ttrpc"\n[debug]\naddress = "{base}/debug.sock"\n'
            + extra_config
        )
        env = dict(os.environ)
        # Our shim is installed next to the interpreter; containerd looks for shims on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        with (base / "log").open("wb") as log:
            proc = subprocess.Popen([CONTAINERD, "--config", str(config)], stdout=log, stderr=log, env=env)
        try:
            deadline = time.monotonic() + 30
            while subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True, check=False).returncode:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((base / "log").read_text())
                time.sleep(0.05)
            yield sock
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run(
                ["sh", "-c", f"grep ' {base}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l"],
                check=False,
                timeout=60,
            )
