"""``[proxy_plugins]``: a snapshotter served by another process, used by name through ctr.

The other process is ``python -m pycontainerd.snapshots.service`` (an overlayfs snapshotter
behind containerd's Snapshots gRPC API, as stargz and other remote snapshotters are).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import private_dir, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "proxy-test"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", extra_layers=1, files_per_layer=20)


@pytest.fixture
def remote() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    with private_dir("proxy-") as base:
        sock = base / "snap.sock"
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pycontainerd.snapshots.service"),
                *("--address", str(sock), "--root", str(base / "root"), "--kind", "overlayfs"),
            ],
        )
        try:
            deadline = time.monotonic() + 20
            while not sock.exists():
                assert proc.poll() is None and time.monotonic() < deadline, "snapshotter service did not start"
                time.sleep(0.05)
            yield sock, proc
        finally:
            proc.terminate()
            proc.wait(10)


def test_proxy_snapshotter_serves_ctr(remote: tuple[Path, subprocess.Popen[bytes]], image: ImageInfo) -> None:
    sock, _ = remote
    proxy = f'[proxy_plugins]\n  [proxy_plugins.remote]\n    type = "snapshot"\n    address = "{sock}"\n'
    with running_daemon(extra_config=proxy) as d:
        plugins = d.ctr("plugins", "ls").stdout
        assert any(
            "io.containerd.snapshotter.v1" in line and "remote" in line and "ok" in line
            for line in plugins.splitlines()
        ), plugins
        d.ctr("images", "import", "--snapshotter", "remote", str(image.path), namespace=NS)
        snapshots = d.ctr("snapshots", "--snapshotter", "remote", "ls", namespace=NS).stdout
        assert snapshots.count("Committed") == len(image.layer_digests)
        out = d.ctr("run", "--rm", "--snapshotter", "remote", image.ref, "viaproxy", "echo", "proxied", namespace=NS)
        assert out.stdout.strip() == "proxied"
        # Namespaces and GC stay the daemon's: removing the image lets the GC remove the remote snapshots.
        d.ctr("images", "rm", "--sync", image.ref, namespace=NS)
        assert "Committed" not in d.ctr("snapshots", "--snapshotter", "remote", "ls", namespace=NS).stdout


def test_bad_proxy_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[proxy_plugins.x]\n  type = "warp-drive"\n  address = "/x.sock"\n')
    result = subprocess.run(
        [sys.executable, "-m", "pycontainerd", "--config", str(config), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "proxy_plugins.x.type" in result.stderr and "not supported" in result.stderr, result.stderr


def test_proxy_down_fails_calls_not_startup(tmp_path: Path) -> None:
    proxy = f'[proxy_plugins.gone]\n  type = "snapshot"\n  address = "{tmp_path}/absent.sock"\n'
    with running_daemon(extra_config=proxy) as d:
        result = d.ctr("snapshots", "--snapshotter", "gone", "prepare", "k1", namespace=NS, check=False)
        assert result.returncode != 0 and "unavailable" in result.stderr.lower(), result.stderr
        # Nothing half-made: the failed prepare left no record.
        assert "k1" not in d.ctr("snapshots", "--snapshotter", "gone", "ls", namespace=NS).stdout
        assert d.ctr("version").returncode == 0


def test_proxy_sandbox_controller() -> None:
    """A sandbox controller in another process: here a second pycontainerd, whose podsandbox
    controller the first daemon reaches as ``[proxy_plugins.farpods]``."""
    import os

    import grpc

    from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
    from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
    from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb

    md = (("containerd-namespace", NS),)
    with running_daemon() as remote:
        proxy = (
            f'[proxy_plugins.farpods]\n  type = "sandbox"\n  address = "{remote.address}"\n'
            '  exports = { sandboxer = "podsandbox" }\n'
        )
        with running_daemon(extra_config=proxy) as d:
            ch = grpc.insecure_channel(f"unix:{d.address}")
            store, controller = pb_grpc.StoreStub(ch), pb_grpc.ControllerStub(ch)
            record = types_pb.Sandbox(
                sandbox_id="far", runtime=types_pb.Sandbox.Runtime(name="io.containerd.runc.v2"), sandboxer="farpods"
            )
            store.Create(pb.StoreCreateRequest(sandbox=record), metadata=md)
            controller.Create(pb.ControllerCreateRequest(sandbox_id="far", sandboxer="farpods"), metadata=md)
            pid = controller.Start(pb.ControllerStartRequest(sandbox_id="far", sandboxer="farpods"), metadata=md).pid
            assert os.path.exists(f"/proc/{pid}")
            status = controller.Status(pb.ControllerStatusRequest(sandbox_id="far", sandboxer="farpods"), metadata=md)
            assert status.state == "SANDBOX_READY" and status.pid == pid
            # The pause container lives in the remote daemon, not here.
            assert "far" in remote.ctr("containers", "ls", "-q", namespace=NS).stdout
            assert "far" not in d.ctr("containers", "ls", "-q", namespace=NS).stdout
            controller.Stop(
                pb.ControllerStopRequest(sandbox_id="far", sandboxer="farpods", timeout_secs=2), metadata=md
            )
            controller.Shutdown(pb.ControllerShutdownRequest(sandbox_id="far", sandboxer="farpods"), metadata=md)
            assert not os.path.exists(f"/proc/{pid}")
            ch.close()
