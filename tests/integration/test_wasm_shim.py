"""containerd-shim-wasmtime-v1 end to end: WASI modules from OCI images, run by the real ctr.

Against our daemon and the real containerd 1.6, and as a CRI runtime handler. The module is
the demo of :mod:`pycontainerd.tools.wasm`, compiled from WAT text here; its first argument
picks what it does (echo, env, exit N, loop, sleep N, cat, trap, write/read in a preopen).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.runc_shim.zygote_client import stop_template
from pycontainerd.tools.wasm import DEMO_WAT, build_wasm_image
from pycontainerd.wasm_shim.main import TEMPLATE_SOCKET
from tests.support.cri import container_config, cri_client, pod_config
from tests.support.daemon import CTR, DaemonProcess, kill_shim_watching_events, running_daemon
from tests.support.daemon import task_status as support_task_status
from tests.support.real_containerd import real_containerd

pytestmark = [pytest.mark.integration, pytest.mark.root]

RUNTIME = "io.containerd.wasmtime.v1"
NS = "wasm-test"
ROOTFS_REF = "docker.io/library/wasm-demo:rootfs"
LAYER_REF = "docker.io/library/wasm-demo:layer"
GROUP = "io.containerd.wasmtime.v1.group"
PYCTR = str(Path(sys.executable).parent / "pyctr")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private module cache; the shim template is stopped once the module's tests are done."""
    path = tmp_path_factory.mktemp("wasm-cache")
    yield path
    stop_template(TEMPLATE_SOCKET)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both layouts of the demo, compiled from its WAT text at test time."""
    base = tmp_path_factory.mktemp("wasm-images")
    module = bytes(wasmtime.wat2wasm(DEMO_WAT))
    return {
        "rootfs": build_wasm_image(base / "rootfs.tar", module, ref=ROOTFS_REF).path,
        "layer": build_wasm_image(base / "layer.tar", module, layout="layer", ref=LAYER_REF).path,
    }


@pytest.fixture
def daemon(cache: Path) -> Iterator[DaemonProcess]:
    with running_daemon(env={"PYCONTAINERD_WASM_CACHE": str(cache)}) as d:
        try:
            yield d
        finally:
            cleanup_tasks(d)
            assert str(d.base) not in Path("/proc/mounts").read_text(), "a rootfs mount leaked"


def cleanup_tasks(d: DaemonProcess) -> None:
    """Kill and remove whatever a failed test left running."""
    if d.proc is None or d.proc.poll() is not None:
        return
    tasks = [line.split()[0] for line in d.ctr("tasks", "ls", namespace=NS, check=False).stdout.splitlines()[1:]]
    for task in tasks:
        d.ctr("tasks", "kill", "-s", "9", task, namespace=NS, check=False)
    for task in tasks:
        wait_status(d, task, "STOPPED", timeout=5, check=False)
        d.ctr("tasks", "rm", "-f", task, namespace=NS, check=False)
    for cid in d.ctr("containers", "ls", "-q", namespace=NS, check=False).stdout.split():
        d.ctr("containers", "rm", cid, namespace=NS, check=False)


def task_status(d: DaemonProcess, cid: str) -> str:
    return support_task_status(d, cid, NS)


def wait_status(d: DaemonProcess, cid: str, status: str, timeout: float = 10, check: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while task_status(d, cid) != status and time.monotonic() < deadline:
        time.sleep(0.05)
    if check:
        assert task_status(d, cid) == status


def run(
    d: DaemonProcess, ref: str, cid: str, *args: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``ctr run --rm --runtime io.containerd.wasmtime.v1 [flags] REF ID ARGS...`` (not checked).

    (Stdin is not piped in: ctr 1.6 sends no CloseIO when its stdin ends before the task is
    created, with any shim, so a module reading stdin would wait for ever.)"""
    return d.ctr("run", "--rm", "--runtime", RUNTIME, *flags, ref, cid, *args, namespace=NS, check=False)


def pyctr_import(d: DaemonProcess, archive: Path, namespace: str = NS) -> None:
    """Import through the daemon (Transfer API): the daemon unpacks, skipping the wasm layer."""
    result = subprocess.run(
        [PYCTR, "-a", str(d.address), "-n", namespace, "images", "import", str(archive)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def bundle_of(d: DaemonProcess, cid: str) -> Path:
    return d.state / "io.containerd.runtime.v2.task" / NS / cid


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_module_in_the_rootfs_runs_with_args_env_and_exit_codes(daemon: DaemonProcess, images: dict[str, Path]) -> None:
    daemon.ctr("images", "import", str(images["rootfs"]), namespace=NS)
    echoed = run(daemon, ROOTFS_REF, "w-echo", "/app.wasm", "echo", "hello", "from wasm")
    assert (echoed.returncode, echoed.stdout) == (0, "hello from wasm\n"), echoed.stderr
    env = run(daemon, ROOTFS_REF, "w-env", "/app.wasm", "env", flags=("--env", "GREETING=hi there"))
    assert env.returncode == 0
    assert "GREETING=hi there" in env.stdout.splitlines() and "PATH=/" in env.stdout.splitlines()
    assert run(daemon, ROOTFS_REF, "w-exit", "/app.wasm", "exit", "42").returncode == 42
    trapped = run(daemon, ROOTFS_REF, "w-trap", "/app.wasm", "trap")
    assert trapped.returncode == 137 and "unreachable" in trapped.stderr
    default = run(daemon, ROOTFS_REF, "w-entry")  # the image's entrypoint, /app.wasm, no argument
    assert default.stdout == "hello from wasm\n"
    missing = run(daemon, ROOTFS_REF, "w-missing", "/missing.wasm")
    assert missing.returncode != 0 and "/missing.wasm: no such file in the rootfs" in missing.stderr
    assert daemon.ctr("containers", "ls", "-q", namespace=NS).stdout.split() == []


def test_module_layer_is_read_from_the_content_store(
    daemon: DaemonProcess, images: dict[str, Path], cache: Path
) -> None:
    # ctr 1.6.20 unpacks client-side and refuses an image with a non-filesystem layer (fixed in 1.6.25):
    # the daemon imports and unpacks it, skipping the module layer, and ctr runs it.
    pyctr_import(daemon, images["layer"])
    manifest = json.loads(daemon.ctr("content", "get", _manifest_digest(daemon), namespace=NS).stdout)
    wasm_layer = manifest["layers"][1]
    assert wasm_layer["mediaType"] == "application/wasm"
    result = run(daemon, LAYER_REF, "w-layer", "app.wasm", "echo", "from", "a", "layer", flags=("--env", "X=1"))
    assert (result.returncode, result.stdout) == (0, "from a layer\n"), result.stderr
    cached = cache / "modules" / (wasm_layer["digest"].replace(":", "-") + ".wasm")
    assert cached.is_file(), "the module came from the content store through the daemon"
    assert run(daemon, LAYER_REF, "w-layer2", "app.wasm", "exit", "7").returncode == 7


def test_runwasi_layout_without_a_filesystem_layer_runs_with_pyctr(
    daemon: DaemonProcess, tmp_path: Path, cache: Path
) -> None:
    # runwasi's layout exactly: wasip1/wasm, the module layer alone, no diff IDs (an empty rootfs).
    module = bytes(wasmtime.wat2wasm(DEMO_WAT))
    image = build_wasm_image(
        tmp_path / "bare.tar",
        module,
        layout="layer",
        ref="docker.io/library/wasm-demo:bare",
        platform="wasip1/wasm",
        filesystem_layer=False,
    )
    pyctr = [PYCTR, "-a", str(daemon.address), "-n", NS]
    imported = subprocess.run(
        [*pyctr, "images", "import", "--platform", "wasip1/wasm", str(image.path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    ran = subprocess.run(
        [
            *pyctr,
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--platform",
            "wasip1/wasm",
            image.ref,
            "bare",
            "app.wasm",
            "exit",
            "9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 9, ran.stderr


def _manifest_digest(d: DaemonProcess) -> str:
    for line in d.ctr("images", "ls", namespace=NS).stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == LAYER_REF:
            return fields[2]
    raise AssertionError(f"{LAYER_REF} not listed")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_looping_module_is_killed(daemon: DaemonProcess, images: dict[str, Path]) -> None:
    daemon.ctr("images", "import", str(images["rootfs"]), namespace=NS)
    daemon.ctr("run", "-d", "--runtime", RUNTIME, ROOTFS_REF, "spin", "/app.wasm", "loop", namespace=NS)
    wait_status(daemon, "spin", "RUNNING")
    pid = int(daemon.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
    listed = daemon.ctr("tasks", "ps", "spin", namespace=NS).stdout.splitlines()[1:]
    assert [int(line.split()[0]) for line in listed] == [pid]
    before = _cpu_ticks(pid)
    time.sleep(0.5)
    assert _cpu_ticks(pid) > before, "the module spins"
    daemon.ctr("tasks", "kill", "-s", "SIGKILL", "spin", namespace=NS)
    wait_status(daemon, "spin", "STOPPED")
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    removed = daemon.ctr("tasks", "rm", "spin", namespace=NS)
    assert "exit code 137" in removed.stderr
    daemon.ctr("containers", "rm", "spin", namespace=NS)


def test_twenty_containers_share_one_shim(daemon: DaemonProcess, images: dict[str, Path]) -> None:
    daemon.ctr("images", "import", str(images["rootfs"]), namespace=NS)
    ids = [f"g{i:02d}" for i in range(20)]
    for cid in ids:
        daemon.ctr(
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--annotation",
            f"{GROUP}=pod1",
            ROOTFS_REF,
            cid,
            "/app.wasm",
            "sleep",
            "60",
            namespace=NS,
        )
    lines = daemon.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]
    running = {line.split()[0]: int(line.split()[1]) for line in lines if line.split()[2] == "RUNNING"}
    assert sorted(running) == ids
    shims = {
        int((bundle_of(daemon, cid) / "shim.pid").read_text())
        for cid in ids
        if (bundle_of(daemon, cid) / "shim.pid").exists()
    }
    assert len(shims) == 1, "only the first start of the group forked a shim"
    (shim,) = shims
    assert {parent_of(pid) for pid in running.values()} == {shim}, "one shim process runs all twenty"
    for cid in ids:
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=NS)
    for cid in ids:
        wait_status(daemon, cid, "STOPPED")
        daemon.ctr("tasks", "rm", cid, namespace=NS)
        daemon.ctr("containers", "rm", cid, namespace=NS)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{shim}").exists() and "zombie" not in Path(f"/proc/{shim}/status").read_text():
        assert time.monotonic() < deadline, "the shim exits with its last task"
        time.sleep(0.1)


def test_bind_mounts_are_preopened(daemon: DaemonProcess, images: dict[str, Path], tmp_path: Path) -> None:
    daemon.ctr("images", "import", str(images["rootfs"]), namespace=NS)
    data, ro = tmp_path / "data", tmp_path / "ro"
    data.mkdir()
    ro.mkdir()
    (ro / "note.txt").write_text("read me\n")
    rw_mount = ("--mount", f"type=bind,src={data},dst=/data,options=rbind:rw")
    ro_mount = ("--mount", f"type=bind,src={ro},dst=/ro,options=rbind:ro")
    wrote = run(
        daemon, ROOTFS_REF, "w-write", "/app.wasm", "write", "/data", "out.txt", "written by wasm", flags=rw_mount
    )
    assert wrote.returncode == 0, wrote.stderr
    assert (data / "out.txt").read_text() == "written by wasm"
    read = run(daemon, ROOTFS_REF, "w-read", "/app.wasm", "read", "/ro", "note.txt", flags=ro_mount)
    assert read.stdout == "read me\n"
    refused = run(daemon, ROOTFS_REF, "w-ro", "/app.wasm", "write", "/ro", "x.txt", "no", flags=ro_mount)
    assert refused.returncode == 1 and "open failed" in refused.stderr
    assert not (ro / "x.txt").exists()
    outside = run(daemon, ROOTFS_REF, "w-nomount", "/app.wasm", "write", "/data", "y.txt", "no")
    assert outside.returncode == 1 and "no such preopened directory" in outside.stderr


def test_runners_die_with_their_shim(daemon: DaemonProcess, images: dict[str, Path]) -> None:
    daemon.ctr("images", "import", str(images["rootfs"]), namespace=NS)
    daemon.ctr("run", "-d", "--runtime", RUNTIME, ROOTFS_REF, "orphan", "/app.wasm", "sleep", "300", namespace=NS)
    wait_status(daemon, "orphan", "RUNNING")
    bundle = bundle_of(daemon, "orphan")
    shim = int((bundle / "shim.pid").read_text())
    runner = int(daemon.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
    events = kill_shim_watching_events(daemon, shim, bundle, "orphan", NS)
    assert "/tasks/exit" in events
    assert task_status(daemon, "orphan") == "" and not bundle.exists()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{runner}").exists() and "zombie" not in Path(f"/proc/{runner}/status").read_text():
        assert time.monotonic() < deadline, "the runner died with its shim (PR_SET_PDEATHSIG)"
        time.sleep(0.1)
    daemon.ctr("containers", "rm", "orphan", namespace=NS)


def _real_ctr(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTR, "-a", str(sock), "-n", "referee", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_real_containerd_runs_the_wasm_shim(
    images: dict[str, Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYCONTAINERD_WASM_CACHE", str(cache))
    with real_containerd() as sock:
        assert _real_ctr(sock, "images", "import", str(images["rootfs"])).returncode == 0
        echoed = _real_ctr(
            sock, "run", "--rm", "--runtime", RUNTIME, "--env", "A=b", ROOTFS_REF, "r1", "/app.wasm", "env"
        )
        assert echoed.returncode == 0 and "A=b" in echoed.stdout.splitlines(), echoed.stderr
        assert (
            _real_ctr(sock, "run", "--rm", "--runtime", RUNTIME, ROOTFS_REF, "r2", "/app.wasm", "exit", "5").returncode
            == 5
        )
        assert _real_ctr(sock, "run", "-d", "--runtime", RUNTIME, ROOTFS_REF, "r3", "/app.wasm", "loop").returncode == 0
        try:
            assert "RUNNING" in _real_ctr(sock, "tasks", "ls").stdout
            assert _real_ctr(sock, "tasks", "kill", "-s", "SIGKILL", "r3").returncode == 0
            deadline = time.monotonic() + 10
            while "STOPPED" not in _real_ctr(sock, "tasks", "ls").stdout and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "STOPPED" in _real_ctr(sock, "tasks", "ls").stdout
        finally:
            _real_ctr(sock, "tasks", "rm", "-f", "r3")
            _real_ctr(sock, "containers", "rm", "r3")


def test_cri_runtime_handler_runs_a_wasm_pod(cache: Path, images: dict[str, Path], tmp_path: Path) -> None:
    extra = f"""
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasm]
  runtime_type = "{RUNTIME}"
"""
    with running_daemon(extra_config=extra, go_shim=False, env={"PYCONTAINERD_WASM_CACHE": str(cache)}) as d:
        pyctr_import(d, images["layer"], namespace="k8s.io")
        logs = tmp_path / "logs"
        logs.mkdir()
        with cri_client(str(d.address)) as cri:
            pod = pod_config("wasm-pod", host_network=True, log_directory=str(logs))
            pod_id = cri.run_pod(pod, handler="wasm")
            try:
                assert cri.pod_status(pod_id).status.state == api.SANDBOX_READY
                config = container_config(
                    "hello", LAYER_REF, "app.wasm", "echo", "hello", "kubernetes", log_path="hello.log"
                )
                container_id = cri.create(pod_id, config, pod)
                cri.start(container_id)
                deadline = time.monotonic() + 20
                while cri.container_status(container_id).status.state != api.CONTAINER_EXITED:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                assert cri.container_status(container_id).status.exit_code == 0
                assert (logs / "hello.log").read_text().split(" ", 3)[3] == "hello kubernetes\n"
            finally:
                cri.stop_pod(pod_id)
                cri.remove_pod(pod_id)
        assert str(d.base) not in Path("/proc/mounts").read_text()
