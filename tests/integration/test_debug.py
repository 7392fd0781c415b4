"""Looking inside a running daemon: the debug socket and the stack dump on SIGUSR1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import time

import pytest

from tests.support.daemon import running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.unix_path)
        self.sock = sock


def get(path: str, url: str) -> tuple[int, str]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_debug_socket_and_stack_dump() -> None:
    with running_daemon() as d:
        sock = d.base / "debug.sock"
        assert not sock.exists(), "no debug socket unless configured"
        # [debug] is in the base config already: add the address to it and restart.
        d.stop()
        d.config_path.write_text(d.config_path.read_text().replace("[debug]\n", f'[debug]\naddress = "{sock}"\n', 1))
        d.start()
        mode = os.stat(sock).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
        status, body = get(str(sock), "/debug/vars")
        assert status == 200
        variables = json.loads(body)
        assert variables["pid"] == d.pid and variables["asyncio_tasks"] >= 1 and variables["rss_bytes"] > 10 << 20
        assert variables["plugins"]["io.containerd.grpc.v1.containers"] == "ok"
        status, stacks = get(str(sock), "/debug/stacks")
        assert status == 200 and "=== asyncio tasks:" in stacks and "=== threads:" in stacks
        assert "--- thread MainThread ---" in stacks
        assert get(str(sock), "/debug/nothing")[0] == 404
        os.kill(d.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "=== END stack dump ===" not in d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        dump = d.log().split("=== BEGIN stack dump ===", 1)[1]
        assert "=== asyncio tasks:" in dump and "=== END stack dump ===" in dump
        assert d.ctr("version").returncode == 0, "still serving after the dump"
        d.stop()
        assert not sock.exists(), "the debug socket goes with the daemon"
