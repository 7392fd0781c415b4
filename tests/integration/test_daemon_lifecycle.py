"""Daemon start-up, configuration errors, isolation and robustness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import DaemonProcess, private_dir, running_daemon, write_config

pytestmark = pytest.mark.integration


def run_daemon_expecting_failure(config_text: str, base: Path) -> subprocess.CompletedProcess[str]:
    config = base / "config.toml"
    config.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "pycontainerd", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_broken_config_names_the_key() -> None:
    with private_dir() as base:
        result = run_daemon_expecting_failure(
            f'version = 2\nroot = "{base}/r"\n[grpc]\naddress = "{base}/s.sock"\nmax_recv_message_size = "lots"\n',
            base,
        )
        assert result.returncode == 1
        assert "grpc.max_recv_message_size" in result.stderr
        assert "expected an integer" in result.stderr
        assert not (base / "s.sock").exists()


def test_bad_plugin_config_names_the_key() -> None:
    with private_dir() as base:
        result = run_daemon_expecting_failure(
            f'version = 2\nroot = "{base}/r"\nstate = "{base}/st"\n[grpc]\naddress = "{base}/s.sock"\n'
            '[plugins."io.containerd.metadata.v1.bolt"]\ncontent_sharing_policy = false\n',
            base,
        )
        assert result.returncode == 1
        assert 'plugins."io.containerd.metadata.v1.bolt".content_sharing_policy' in result.stderr


def test_version_1_config_is_refused_with_conversion_help() -> None:
    with private_dir() as base:
        result = run_daemon_expecting_failure('version = 1\n[plugins.cri]\nsandbox_image = "x"\n', base)
        assert result.returncode == 1
        assert "version 1 is not supported" in result.stderr
        assert "version = 2" in result.stderr


def test_required_plugin_failure_is_fatal_other_failures_are_not() -> None:
    bad = 'version = 2\n[plugins."io.containerd.metadata.v1.bolt"]\ncontent_sharing_policy = "bogus"\n'
    with private_dir() as base:
        config = base / "config.toml"
        write_config(config, base, '[plugins."io.containerd.metadata.v1.bolt"]\ncontent_sharing_policy = "bogus"\n')
        d = DaemonProcess(base=base, config_path=config)
        try:
            d.start()  # not required: the daemon runs, the plugin shows as error
            rows = d.ctr("plugins", "ls").stdout
            assert any(
                line.split()[:2] == ["io.containerd.metadata.v1", "bolt"] and line.split()[-1] == "error"
                for line in rows.splitlines()
            )
        finally:
            d.stop()
        write_config(
            config,
            base,
            bad.split("\n", 1)[1],
            top_level='required_plugins = ["io.containerd.metadata.v1.bolt"]',
        )
        result = subprocess.run(d.command(), capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1
        assert "required plugin io.containerd.metadata.v1.bolt failed to load" in result.stderr


def test_sigterm_stops_cleanly_and_removes_sockets(daemon: DaemonProcess) -> None:
    ttrpc_sock = Path(f"{daemon.address}.ttrpc")
    assert daemon.address.exists()
    assert oct(daemon.address.stat().st_mode & 0o777) == oct(0o660)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.address.exists()
    assert not ttrpc_sock.exists()
    assert "stopped" in daemon.log()


def test_two_daemons_do_not_interfere() -> None:
    with running_daemon() as one, running_daemon() as two:
        one.ctr("namespaces", "create", "only-in-one")
        assert "only-in-one" in one.ctr("namespaces", "ls").stdout
        assert "only-in-one" not in two.ctr("namespaces", "ls").stdout
        uuid_one = one.ctr("version").stdout.split("UUID:")[1].split()[0]
        uuid_two = two.ctr("version").stdout.split("UUID:")[1].split()[0]
        assert uuid_one != uuid_two


def test_second_daemon_on_same_socket_is_refused(daemon: DaemonProcess) -> None:
    with private_dir() as base:
        config = base / "config.toml"
        config.write_text(f'version = 2\nroot = "{base}/r"\nstate = "{base}/s"\n[grpc]\naddress = "{daemon.address}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "pycontainerd", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "in use" in result.stderr
    daemon.ctr("version")  # the first daemon still answers


def test_stale_socket_is_replaced() -> None:
    with private_dir() as base:
        config = base / "config.toml"
        write_config(config, base)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(base / "pcd.sock"))
        stale.close()  # leaves a socket file nobody listens on, as after kill -9
        d = DaemonProcess(base=base, config_path=config)
        try:
            d.start()
            d.ctr("version")
        finally:
            d.stop()


def test_survives_garbage_and_disconnects(daemon: DaemonProcess) -> None:
    for payload in (
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),
    ):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(daemon.address))
            raw.sendall(payload)
    # A client that opens a stream and vanishes mid-call.
    code = (
        "import grpc, sys\n"
        "from grpc_health.v1 import health_pb2, health_pb2_grpc\n"
        f"ch = grpc.insecure_channel('unix:{daemon.address}')\n"
        "stream = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())\n"
        "next(stream)\nprint('watching', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as client:
        try:
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "watching"
        finally:
            client.kill()
            client.wait(10)
    with grpc.insecure_channel(f"unix:{daemon.address}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    daemon.ctr("version")
    assert daemon.proc is not None
    assert daemon.proc.poll() is None


def test_config_default_and_dump() -> None:
    default = subprocess.run(
        [sys.executable, "-m", "pycontainerd", "config", "default"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    parsed = tomllib.loads(default)
    assert parsed["version"] == 2
    assert parsed["root"] == "/var/lib/pycontainerd"
    assert parsed["grpc"]["address"] == "/run/pycontainerd/pycontainerd.sock"
    assert "io.containerd.metadata.v1.bolt" in parsed["plugins"]
    with private_dir() as base:
        (base / "extra.toml").write_text('version = 2\n[debug]\nlevel = "warn"\n')
        config = base / "config.toml"
        config.write_text(f'version = 2\nimports = ["{base}/extra.toml"]\nroot = "{base}/r"\n')
        dump = subprocess.run(
            [
                sys.executable,
                "-m",
                "pycontainerd",
                "--address",
                f"{base}/flag.sock",
                "config",
                "dump",
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    effective = tomllib.loads(dump)
    assert effective["root"] == f"{base}/r"
    assert effective["debug"]["level"] == "warn"
    assert effective["grpc"]["address"] == f"{base}/flag.sock"


def test_help_explains() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pycontainerd", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for word in ("--config", "--address", "--root", "--state", "--log-level", "config default"):
        assert word in out


def test_startup_is_fast(daemon: DaemonProcess) -> None:
    # Not a benchmark (bench/ is): a guard against an accidental multi-second start-up.
    assert daemon.stop() == 0
    started = time.monotonic()
    daemon.start()
    assert time.monotonic() - started < 5
