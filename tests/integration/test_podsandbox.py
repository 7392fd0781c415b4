"""The podsandbox controller: a pause container whose network, IPC and UTS namespaces two
containers (run by the real ctr) join; Status, Wait, Metrics, Stop and Shutdown; a sandbox that
survives kill -9 of the daemon. Runs with each shim."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import grpc
import pytest

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "pods"
MD = (("containerd-namespace", NS),)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar")


@pytest.fixture(params=["go-shim", "py-shim"])
def daemon(request: pytest.FixtureRequest, image: ImageInfo) -> Iterator[DaemonProcess]:
    with running_daemon(go_shim=request.param == "go-shim") as d:
        d.ctr("images", "import", str(image.path), namespace=NS)
        yield d


def stubs(d: DaemonProcess) -> tuple[pb_grpc.StoreStub, pb_grpc.ControllerStub]:
    channel = grpc.insecure_channel(f"unix:{d.address}")
    return pb_grpc.StoreStub(channel), pb_grpc.ControllerStub(channel)


def start_sandbox(d: DaemonProcess, sid: str) -> int:
    store, controller = stubs(d)
    record = types_pb.Sandbox(
        sandbox_id=sid, runtime=types_pb.Sandbox.Runtime(name="io.containerd.runc.v2"), sandboxer="podsandbox"
    )
    store.Create(pb.StoreCreateRequest(sandbox=record), metadata=MD)
    controller.Create(
        pb.ControllerCreateRequest(sandbox_id=sid, annotations={"io.kubernetes.cri.hostname": "podhost"}), metadata=MD
    )
    return controller.Start(pb.ControllerStartRequest(sandbox_id=sid), metadata=MD).pid


def ns_ids(pid: int) -> dict[str, int]:
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in ("net", "ipc", "uts", "mnt", "pid")}


def test_two_containers_share_the_sandbox(daemon: DaemonProcess, image: ImageInfo) -> None:
    _, controller = stubs(daemon)
    pause = start_sandbox(daemon, "pod1")
    status = controller.Status(pb.ControllerStatusRequest(sandbox_id="pod1"), metadata=MD)
    assert status.state == "SANDBOX_READY" and status.pid == pause
    joins = []
    for kind, ns in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
        joins += ["--with-ns", f"{kind}:/proc/{pause}/ns/{ns}"]
    pids = []
    for name in ("app1", "app2"):
        daemon.ctr("run", "-d", *joins, image.ref, name, "sleep", "300", namespace=NS)
        line = next(x for x in daemon.ctr("tasks", "ls", namespace=NS).stdout.splitlines() if x.startswith(name))
        pids.append(int(line.split()[1]))
    sandbox_ns = ns_ids(pause)
    host_ns = ns_ids(os.getpid())
    for pid in pids:
        mine = ns_ids(pid)
        for kind in ("net", "ipc", "uts"):
            assert mine[kind] == sandbox_ns[kind] != host_ns[kind], f"{kind} shared with the sandbox"
        assert mine["mnt"] != sandbox_ns["mnt"], "each container keeps its own mounts"
    out = daemon.ctr("tasks", "exec", "--exec-id", "h", "app1", "hostname", namespace=NS)
    assert out.stdout.strip() == "podhost"

    metrics = controller.Metrics(pb.ControllerMetricsRequest(sandbox_id="pod1"), metadata=MD).metrics
    assert metrics.id == "pod1" and metrics.data.type_url.startswith("io.containerd.cgroups")

    for name in ("app1", "app2"):
        daemon.ctr("tasks", "kill", "-s", "KILL", name, namespace=NS)
        daemon.ctr("tasks", "rm", "-f", name, namespace=NS, check=False)
        daemon.ctr("containers", "rm", name, namespace=NS, check=False)
    controller.Stop(pb.ControllerStopRequest(sandbox_id="pod1", timeout_secs=5), metadata=MD)
    ended = controller.Wait(pb.ControllerWaitRequest(sandbox_id="pod1"), metadata=MD)
    assert ended.exited_at.seconds > 0
    assert controller.Status(pb.ControllerStatusRequest(sandbox_id="pod1"), metadata=MD).state == "SANDBOX_NOTREADY"
    controller.Shutdown(pb.ControllerShutdownRequest(sandbox_id="pod1"), metadata=MD)
    assert not os.path.exists(f"/proc/{pause}"), "the pause process is gone"
    assert "pod1" not in daemon.ctr("containers", "ls", "-q", namespace=NS).stdout
    with open("/proc/self/mountinfo") as mountinfo:
        assert str(daemon.root) not in mountinfo.read(), "nothing left mounted"


def test_sandbox_survives_daemon_kill(daemon: DaemonProcess) -> None:
    pause = start_sandbox(daemon, "pod2")
    daemon.kill()
    daemon.start()
    _, controller = stubs(daemon)
    deadline = time.monotonic() + 10
    while True:
        status = controller.Status(pb.ControllerStatusRequest(sandbox_id="pod2"), metadata=MD)
        if status.state == "SANDBOX_READY" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status.state == "SANDBOX_READY" and status.pid == pause
    controller.Shutdown(pb.ControllerShutdownRequest(sandbox_id="pod2"), metadata=MD)
    assert not os.path.exists(f"/proc/{pause}")


def test_unknown_controller_and_sandbox(daemon: DaemonProcess) -> None:
    _, controller = stubs(daemon)
    with pytest.raises(grpc.RpcError) as err:
        controller.Status(pb.ControllerStatusRequest(sandbox_id="nope"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        controller.Platform(pb.ControllerPlatformRequest(sandbox_id="x", sandboxer="warp"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    platform = controller.Platform(pb.ControllerPlatformRequest(sandbox_id="x"), metadata=MD).platform
    assert platform.os == "linux"


def test_pyctr_sandboxes(daemon: DaemonProcess) -> None:
    import subprocess
    import sys

    def pyctr(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pycontainerd.cli.main", "-a", str(daemon.address), "-n", NS, "sandboxes", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    pid = int(pyctr("run", "--hostname", "h1", "--label", "app=web", "sb1").strip())
    assert os.path.exists(f"/proc/{pid}")
    listing = pyctr("ls")
    assert "sb1" in listing and "SANDBOX_READY" in listing and str(pid) in listing
    assert '"app": "web"' in pyctr("inspect", "sb1")
    pyctr("rm", "--timeout", "2", "sb1")
    assert not os.path.exists(f"/proc/{pid}")
    assert "sb1" not in pyctr("ls")


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("PPid:")).split()[1])


def test_shim_controller_one_shim_per_pod(image: ImageInfo) -> None:
    """The ``shim`` sandboxer: the sandbox made through our shim's Sandbox API, and the pod's
    containers (annotated with the sandbox ID) served by that same shim process."""
    with running_daemon(go_shim=False) as d:
        d.ctr("images", "import", str(image.path), namespace=NS)
        store, controller = stubs(d)
        record = types_pb.Sandbox(
            sandbox_id="spod", runtime=types_pb.Sandbox.Runtime(name="io.containerd.pyrunc.v2"), sandboxer="shim"
        )
        store.Create(pb.StoreCreateRequest(sandbox=record), metadata=MD)
        controller.Create(pb.ControllerCreateRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        pause = controller.Start(pb.ControllerStartRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD).pid
        status = controller.Status(pb.ControllerStatusRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        assert status.state == "SANDBOX_READY" and status.pid == pause and status.created_at.seconds > 0
        shim = _ppid(pause)
        joins = []
        for kind, ns in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
            joins += ["--with-ns", f"{kind}:/proc/{pause}/ns/{ns}"]
        for name in ("s1", "s2"):
            d.ctr(
                "run", "-d", "--runtime", "io.containerd.pyrunc.v2",
                "--annotation", "io.kubernetes.cri.sandbox-id=spod",
                *joins, image.ref, name, "sleep", "300", namespace=NS,
            )  # fmt: skip
            line = next(x for x in d.ctr("tasks", "ls", namespace=NS).stdout.splitlines() if x.startswith(name))
            pid = int(line.split()[1])
            assert _ppid(pid) == shim, "the pod's containers live in the sandbox's shim"
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/proc/{pause}/ns/net").st_ino
        metrics = controller.Metrics(pb.ControllerMetricsRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        assert metrics.metrics.data.type_url.startswith("io.containerd.cgroups")
        # kill -9 of the daemon: the pod keeps running and is controllable after the restart.
        d.kill()
        d.start()
        store, controller = stubs(d)
        status = controller.Status(pb.ControllerStatusRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        assert status.state == "SANDBOX_READY" and status.pid == pause
        assert "RUNNING" in d.ctr("tasks", "ls", namespace=NS).stdout
        for name in ("s1", "s2"):
            d.ctr("tasks", "kill", "-s", "KILL", name, namespace=NS)
            d.ctr("tasks", "rm", "-f", name, namespace=NS, check=False)
            d.ctr("containers", "rm", name, namespace=NS, check=False)
        controller.Stop(pb.ControllerStopRequest(sandbox_id="spod", sandboxer="shim", timeout_secs=5), metadata=MD)
        ended = controller.Wait(pb.ControllerWaitRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        assert ended.exited_at.seconds > 0
        controller.Shutdown(pb.ControllerShutdownRequest(sandbox_id="spod", sandboxer="shim"), metadata=MD)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{shim}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{shim}"), "the pod's shim exits with its last task"
        assert "spod" not in d.ctr("containers", "ls", "-q", namespace=NS).stdout
