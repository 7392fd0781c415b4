"""The Prometheus endpoint: scraped and parsed while the daemon serves requests and a task."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import build_image
from tests.support.daemon import running_daemon
from tests.support.prometheus import parse

pytestmark = [pytest.mark.integration, pytest.mark.root]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scrape(tmp_path: Path) -> None:
    port = _free_port()
    image = build_image(tmp_path / "bb.tar")
    top = f'[metrics]\naddress = "127.0.0.1:{port}"\ngrpc_histogram = true\n'
    with running_daemon(extra_config=top) as d:
        d.ctr("images", "import", str(image.path), namespace="m")
        d.ctr("images", "ls", namespace="m")
        d.ctr("images", "ls", namespace="m")
        d.ctr("containers", "info", "absent", namespace="m", check=False)
        d.ctr("run", "-d", image.ref, "measured", "sleep", "60", namespace="m")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/metrics", timeout=10) as resp:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                families = parse(resp.read().decode())
        finally:
            d.ctr("tasks", "kill", "-s", "KILL", "measured", namespace="m", check=False)
            d.ctr("tasks", "rm", "-f", "measured", namespace="m", check=False)
            d.ctr("containers", "rm", "measured", namespace="m", check=False)
    handled = families["grpc_server_handled_total"]
    by = {(s[1]["grpc_method"], s[1]["grpc_code"]): s[2] for s in handled.samples}
    assert by[("List", "OK")] >= 2, "two image listings"
    assert by[("Get", "NOT_FOUND")] >= 1, "the missing container"
    assert families["grpc_server_handling_seconds"].kind == "histogram"
    objects = {(s[1]["namespace"], s[1]["kind"]): s[2] for s in families["pycontainerd_objects"].samples}
    assert objects[("m", "image")] == 1 and objects[("m", "container")] == 1
    memory = {s[1]["container_id"]: s[2] for s in families["container_memory_usage_bytes"].samples}
    assert memory["measured"] > 0, "the task's cgroup memory"
    assert families["process_resident_memory_bytes"].samples[0][2] > 10 * 2**20
