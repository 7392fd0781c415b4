"""Runtime v2 shims that speak gRPC, and the clean-up after a shim that cannot delete its task.

Our shim serves its Task API over gRPC when the runtime's config says ``protocol = "grpc"``;
the real ``ctr`` (1.6) drives containers through our daemon, which talks gRPC to the shim. A
second daemon run (after ``kill -9``) finds the shim again from the bundle's bootstrap.json.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import CTR, DaemonProcess, kill_shim_watching_events, running_daemon
from tests.support.daemon import task_status as support_task_status

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "grpc-shim"
RUNTIME = "io.containerd.pygrpc.v2"
CONFIG = f"""
[plugins."io.containerd.runtime.v2.task".runtimes."{RUNTIME}"]
path = "containerd-shim-pyrunc-v2"
protocol = "grpc"
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("image") / "busybox.tar")


def bundle_dir(d: DaemonProcess, cid: str) -> Path:
    return d.state / "io.containerd.runtime.v2.task" / NS / cid


def run(
    d: DaemonProcess, runtime: str, ref: str, cid: str, *args: str, detach: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [
        CTR,
        "-a",
        str(d.address),
        "-n",
        NS,
        "run",
        "--runtime",
        runtime,
        "-d" if detach else "--rm",
        ref,
        cid,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def task_status(d: DaemonProcess, cid: str) -> str:
    return support_task_status(d, cid, NS)


def wait_status(d: DaemonProcess, cid: str, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while task_status(d, cid) != status and time.monotonic() < deadline:
        time.sleep(0.1)
    assert task_status(d, cid) == status


def process_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            if "zombie" in status.read_text():
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def mounts_under(path: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(path) in line.split()[1]]


def cleanup(d: DaemonProcess) -> None:
    """Kill and remove whatever a failed test left running."""
    if d.proc is None or d.proc.poll() is not None:
        return
    for line in d.ctr("tasks", "ls", namespace=NS, check=False).stdout.splitlines()[1:]:
        task = line.split()[0]
        d.ctr("tasks", "kill", "-s", "9", task, namespace=NS, check=False)
        time.sleep(0.2)
        d.ctr("tasks", "rm", "-f", task, namespace=NS, check=False)
    for cid in d.ctr("containers", "ls", "-q", namespace=NS, check=False).stdout.split():
        d.ctr("containers", "rm", cid, namespace=NS, check=False)


@pytest.fixture
def daemon(image: ImageInfo) -> Iterator[DaemonProcess]:
    with running_daemon(extra_config=CONFIG) as d:
        try:
            d.ctr("images", "import", str(image.path), namespace=NS)
            yield d
        finally:
            cleanup(d)


def shim_connect(address: str) -> shim_pb2.ConnectResponse:
    """Ask the shim directly, over gRPC (Task API v3): a referee that it really speaks gRPC."""
    with grpc.insecure_channel(f"unix://{address}") as channel:
        connect = channel.unary_unary(
            "/containerd.task.v3.Task/Connect",
            request_serializer=shim_pb2.ConnectRequest.SerializeToString,
            response_deserializer=shim_pb2.ConnectResponse.FromString,
        )
        reply: shim_pb2.ConnectResponse = connect(shim_pb2.ConnectRequest(id="x"), timeout=10)
        return reply


def test_run_output_and_exit_code(daemon: DaemonProcess, image: ImageInfo) -> None:
    out = run(daemon, RUNTIME, image.ref, "g1", "sh", "-c", "echo hello over grpc; exit 3")
    assert out.returncode == 3, out.stderr
    assert out.stdout.strip() == "hello over grpc"
    assert not bundle_dir(daemon, "g1").exists()
    assert daemon.ctr("containers", "ls", "-q", namespace=NS).stdout.strip() == ""


def test_tasks_ls_exec_kill_and_restart(daemon: DaemonProcess, image: ImageInfo) -> None:
    d = daemon
    started = run(d, RUNTIME, image.ref, "g2", "sleep", "300", detach=True)
    assert started.returncode == 0, started.stderr
    boot = json.loads((bundle_dir(d, "g2") / "bootstrap.json").read_text())
    assert (boot["protocol"], boot["version"]) == ("grpc", 3)
    address = boot["address"]
    assert address.startswith("/"), "a plain socket path, as containerd dials it"
    shim_pid = int((bundle_dir(d, "g2") / "shim.pid").read_text())
    assert shim_connect(address).shim_pid == shim_pid
    assert task_status(d, "g2") == "RUNNING"
    task_pid = int(d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
    assert re.search(rf"^{task_pid}\b", d.ctr("tasks", "ps", "g2", namespace=NS).stdout, re.M)
    ex = d.ctr("tasks", "exec", "--exec-id", "e1", "g2", "echo", "from exec", namespace=NS)
    assert ex.stdout.strip() == "from exec"

    d.kill()  # kill -9: the shim and its container carry on without the daemon
    d.start()
    assert task_status(d, "g2") == "RUNNING", "reconnected to the gRPC shim"
    assert d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1] == str(task_pid)
    ex = d.ctr("tasks", "exec", "--exec-id", "e2", "g2", "sh", "-c", "echo again; exit 4", namespace=NS, check=False)
    assert (ex.returncode, ex.stdout.strip()) == (4, "again")

    with subprocess.Popen([CTR, "-a", str(d.address), "events"], stdout=subprocess.PIPE, text=True) as events:
        try:
            time.sleep(1.0)  # let ctr events subscribe before anything is published
            d.ctr("tasks", "kill", "-s", "9", "g2", namespace=NS)
            wait_status(d, "g2", "STOPPED")
            time.sleep(0.5)
        finally:
            events.terminate()
        text, _ = events.communicate(timeout=10)
    assert "/tasks/exit" in text and '"container_id":"g2"' in text, text
    d.ctr("tasks", "rm", "g2", namespace=NS)
    d.ctr("containers", "rm", "g2", namespace=NS)
    assert task_status(d, "g2") == ""
    assert process_gone(shim_pid), "the shim exits with its last task"
    assert not Path(address).exists()
    assert not bundle_dir(d, "g2").exists()


def test_a_killed_grpc_shim_is_noticed(daemon: DaemonProcess, image: ImageInfo) -> None:
    d = daemon
    assert run(d, RUNTIME, image.ref, "g3", "sleep", "300", detach=True).returncode == 0
    bundle = bundle_dir(d, "g3")
    shim_pid = int((bundle / "shim.pid").read_text())
    task_pid = int(d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
    text = kill_shim_watching_events(d, shim_pid, bundle, "g3", NS)
    assert task_status(d, "g3") == "", "the task of a dead shim is gone"
    assert "/tasks/exit" in text
    assert not bundle.exists()
    assert mounts_under(d.state) == [], "no rootfs mount leaked"
    assert process_gone(task_pid), "the container went with its shim"
    d.ctr("containers", "rm", "g3", namespace=NS)


@pytest.mark.parametrize("protocol", ["ttrpc", "grpc"])
def test_a_task_whose_delete_fails_is_cleaned_up(image: ImageInfo, tmp_path: Path, protocol: str) -> None:
    # An OCI runtime that refuses `start` and `delete`: the task stays created after the failed
    # start, and the shim's Delete fails too. Deleting the task must still leave nothing behind.
    wrapper = tmp_path / "half-broken-runc"
    wrapper.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in start|delete) echo "$a refused" >&2; exit 1;; esac; done\n'
        'exec /usr/sbin/runc "$@"\n'
    )
    wrapper.chmod(0o755)
    config = (
        '[plugins."io.containerd.runtime.v2.task".runtimes."io.example.broken.v1"]\n'
        'path = "containerd-shim-pyrunc-v2"\n'
        f'protocol = "{protocol}"\n'
        f'options = {{ BinaryName = "{wrapper}" }}\n'
    )
    with running_daemon(extra_config=config) as d:
        try:
            d.ctr("images", "import", str(image.path), namespace=NS)
            out = run(d, "io.example.broken.v1", image.ref, "broken", "true")
            assert out.returncode != 0 and "start refused" in out.stderr, out.stderr
            bundle = bundle_dir(d, "broken")
            assert task_status(d, "broken") == "CREATED"
            assert mounts_under(bundle) == [str(bundle / "rootfs")], "the precondition: a mounted rootfs"
            shim_pid = int((bundle / "shim.pid").read_text())

            removed = d.ctr("tasks", "rm", "-f", "broken", namespace=NS, check=False)
            assert "delete refused" in removed.stderr, "the shim's failure is reported"
            assert task_status(d, "broken") == ""
            assert mounts_under(d.state) == [], "no mount left under the state dir"
            assert not bundle.exists(), "no bundle left"
            assert not (d.state / "runc" / NS / "broken").exists(), "no runc state left"
            assert process_gone(shim_pid), "no shim left"
            d.ctr("containers", "rm", "broken", namespace=NS)
            assert "broken" not in d.ctr("snapshots", "ls", namespace=NS).stdout
        finally:
            cleanup(d)
            for point in reversed(mounts_under(d.base)):
                subprocess.run(["umount", "-l", point], check=False, timeout=30)
