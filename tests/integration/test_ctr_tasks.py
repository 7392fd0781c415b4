"""Tasks with the real ctr: the Debian Go shim and our Python shim, runc underneath."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import CTR, DaemonProcess, kill_shim_watching_events, running_daemon
from tests.support.daemon import task_status as support_task_status
from tests.support.rootfs import make_rootfs

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "tasks-test"
RUNTIMES = ["io.containerd.runc.v2", "io.containerd.pyrunc.v2"]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs")


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    with running_daemon() as d:
        try:
            yield d
        finally:
            cleanup_tasks(d)


def cleanup_tasks(d: DaemonProcess) -> None:
    """Kill and remove whatever a failed test left running."""
    if d.proc is None or d.proc.poll() is not None:
        return
    for line in d.ctr("tasks", "ls", namespace=NS, check=False).stdout.splitlines()[1:]:
        task = line.split()[0]
        d.ctr("tasks", "kill", "-s", "9", task, namespace=NS, check=False)
        time.sleep(0.2)
        d.ctr("tasks", "rm", "-f", task, namespace=NS, check=False)
    for line in d.ctr("containers", "ls", "-q", namespace=NS, check=False).stdout.split():
        d.ctr("containers", "rm", line, namespace=NS, check=False)


def run(
    d: DaemonProcess, runtime: str, rootfs: Path, cid: str, *args: str, detach: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [CTR, "-a", str(d.address), "-n", NS, "run", "--runtime", runtime]
    cmd += ["-d"] if detach else ["--rm"]
    # --rootfs is a switch: the first argument is then a root directory instead of an image.
    cmd += ["--rootfs", str(rootfs), cid, "/bin/busybox", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def task_status(d: DaemonProcess, cid: str) -> str:
    return support_task_status(d, cid, NS)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_prints_output_and_exit_code(daemon: DaemonProcess, rootfs: Path, runtime: str) -> None:
    out = run(daemon, runtime, rootfs, "hello", "echo", "hello from a container")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello from a container"
    failing = run(daemon, runtime, rootfs, "fails", "sh", "-c", "exit 3")
    assert failing.returncode == 3, failing.stderr
    assert daemon.ctr("containers", "ls", "-q", namespace=NS).stdout.strip() == ""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_detached_exec_kill_delete(daemon: DaemonProcess, rootfs: Path, runtime: str) -> None:
    started = run(daemon, runtime, rootfs, "sleeper", "sleep", "300", detach=True)
    assert started.returncode == 0, started.stderr
    assert task_status(daemon, "sleeper") == "RUNNING"
    pids = daemon.ctr("tasks", "ps", "sleeper", namespace=NS).stdout
    assert re.search(r"^\d+", pids.splitlines()[1]), pids
    ex = daemon.ctr("tasks", "exec", "--exec-id", "e1", "sleeper", "/bin/busybox", "echo", "from exec", namespace=NS)
    assert ex.stdout.strip() == "from exec"
    daemon.ctr("tasks", "kill", "-s", "9", "sleeper", namespace=NS)
    deadline = time.monotonic() + 10
    while task_status(daemon, "sleeper") != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert task_status(daemon, "sleeper") == "STOPPED"
    daemon.ctr("tasks", "rm", "sleeper", namespace=NS)
    daemon.ctr("containers", "rm", "sleeper", namespace=NS)
    assert task_status(daemon, "sleeper") == ""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_running_container_survives_daemon_kill9(rootfs: Path, runtime: str) -> None:
    with running_daemon() as d:
        try:
            assert run(d, runtime, rootfs, "survivor", "sleep", "300", detach=True).returncode == 0
            pid = int(d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
            d.kill()
            d.start()
            assert task_status(d, "survivor") == "RUNNING"
            assert Path(f"/proc/{pid}").exists()
            d.ctr("tasks", "kill", "-s", "9", "survivor", namespace=NS)
            deadline = time.monotonic() + 10
            while task_status(d, "survivor") != "STOPPED" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert task_status(d, "survivor") == "STOPPED"
        finally:
            cleanup_tasks(d)


def test_unknown_runtime_is_a_clear_error(daemon: DaemonProcess, rootfs: Path) -> None:
    out = run(daemon, "io.containerd.nonexistent.v9", rootfs, "bad", "true")
    assert out.returncode != 0
    assert "containerd-shim-nonexistent-v9" in out.stderr
    assert shutil.which("containerd-shim-nonexistent-v9") is None


def test_grouped_containers_share_one_python_shim(daemon: DaemonProcess, rootfs: Path) -> None:
    def run_grouped(cid: str) -> None:
        cmd = [
            CTR,
            "-a",
            str(daemon.address),
            "-n",
            NS,
            "run",
            "-d",
            "--runtime",
            "io.containerd.pyrunc.v2",
            "--annotation",
            "io.containerd.runc.v2.group=pod1",
            "--rootfs",
            str(rootfs),
            cid,
            "/bin/busybox",
            "sleep",
            "300",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr

    run_grouped("g1")
    run_grouped("g2")
    bundles = daemon.state / "io.containerd.runtime.v2.task" / NS
    address = (bundles / "g1" / "address").read_text()
    assert (bundles / "g2" / "address").read_text() == address, "one shim for the group"
    shim_pid = int((bundles / "g1" / "shim.pid").read_text())
    for cid in ("g1", "g2"):
        daemon.ctr("tasks", "kill", "-s", "9", cid, namespace=NS)
    deadline = time.monotonic() + 10
    while {task_status(daemon, c) for c in ("g1", "g2")} != {"STOPPED"} and time.monotonic() < deadline:
        time.sleep(0.1)
    daemon.ctr("tasks", "rm", "g1", namespace=NS)
    assert Path(f"/proc/{shim_pid}").exists(), "the shim stays while it serves g2"
    assert task_status(daemon, "g2") == "STOPPED"
    daemon.ctr("tasks", "rm", "g2", namespace=NS)
    deadline = time.monotonic() + 10
    while (
        Path(f"/proc/{shim_pid}/status").exists()
        and "zombie" not in Path(f"/proc/{shim_pid}/status").read_text()
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    status = Path(f"/proc/{shim_pid}/status")
    assert not status.exists() or "zombie" in status.read_text(), "the last task gone, the shim exits"
    for cid in ("g1", "g2"):
        daemon.ctr("containers", "rm", cid, namespace=NS)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_killed_shim_is_cleaned_up(daemon: DaemonProcess, rootfs: Path, runtime: str) -> None:
    assert run(daemon, runtime, rootfs, "orphan", "sleep", "300", detach=True).returncode == 0
    bundle = daemon.state / "io.containerd.runtime.v2.task" / NS / "orphan"
    pid_file = bundle / "shim.pid"
    if pid_file.exists():
        shim_pid = int(pid_file.read_text())
    else:  # Debian's Go shim keeps its pid to itself: find it by its command line
        found = subprocess.run(
            ["pgrep", "-f", "containerd-shim-runc-v2 .*-id orphan"], capture_output=True, text=True, check=False
        )
        shim_pid = int(found.stdout.split()[0])
    task_pid = int(daemon.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1].split()[1])
    text = kill_shim_watching_events(daemon, shim_pid, bundle, "orphan", NS)
    assert task_status(daemon, "orphan") == "", "the task of a dead shim is gone"
    assert "/tasks/exit" in text
    assert not bundle.exists()
    assert str(bundle) not in Path("/proc/mounts").read_text(), "no rootfs mount leaked"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{task_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{task_pid}").exists() or "zombie" in Path(f"/proc/{task_pid}/status").read_text()
    daemon.ctr("containers", "rm", "orphan", namespace=NS)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_with_a_tty(daemon: DaemonProcess, rootfs: Path, runtime: str) -> None:
    # `script` gives ctr a pseudo-terminal, as a user's shell would; ctr then asks for a tty
    # (and resizes it to ours), and the container sees /dev/pts/N.
    ctr_cmd = (
        f"{CTR} -a {daemon.address} -n {NS} run -t --rm --runtime {runtime} --rootfs {rootfs} tty1 "
        "/bin/busybox sh -c 'tty; echo done-with-tty'"
    )
    result = subprocess.run(
        ["script", "-qec", ctr_cmd, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"/dev/pts/\d+", result.stdout), result.stdout
    assert "done-with-tty" in result.stdout


@pytest.mark.slow
def test_twenty_containers_survive_daemon_kill9(rootfs: Path) -> None:
    names = [f"s{i}" for i in range(20)]
    with running_daemon() as d:
        try:
            for i, name in enumerate(names):
                runtime = RUNTIMES[i % 2]
                assert run(d, runtime, rootfs, name, "sleep", "600", detach=True).returncode == 0
            before = {
                line.split()[0]: line.split()[1] for line in d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]
            }
            assert sorted(before) == sorted(names)
            d.kill()
            d.start()
            after = {
                line.split()[0]: (line.split()[1], line.split()[2])
                for line in d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]
            }
            assert {n: pid for n, (pid, _) in after.items()} == before, "same tasks, same PIDs"
            assert {status for _, status in after.values()} == {"RUNNING"}
            with subprocess.Popen([CTR, "-a", str(d.address), "events"], stdout=subprocess.PIPE, text=True) as events:
                try:
                    time.sleep(1.0)  # let ctr events subscribe before anything is published
                    for name in names:
                        d.ctr("tasks", "kill", "-s", "9", name, namespace=NS)
                    deadline = time.monotonic() + 20
                    while any(task_status(d, n) != "STOPPED" for n in names) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    time.sleep(0.5)
                finally:
                    events.terminate()
                text, _ = events.communicate(timeout=10)
            assert text.count("/tasks/exit") >= len(names), "every exit after the restart is reported"
        finally:
            cleanup_tasks(d)


def test_runc_v2_is_our_shim_by_default(rootfs: Path) -> None:
    with running_daemon(go_shim=False) as d:
        try:
            assert run(d, "io.containerd.runc.v2", rootfs, "dflt", "sleep", "60", detach=True).returncode == 0
            bundle = d.state / "io.containerd.runtime.v2.task" / NS / "dflt"
            assert (bundle / "shim-binary-path").read_text().endswith("containerd-shim-pyrunc-v2")
        finally:
            cleanup_tasks(d)


@pytest.mark.parametrize("shim", ["/usr/bin/containerd-shim-runc-v2", "containerd-shim-pyrunc-v2"])
def test_binary_name_option_selects_the_oci_runtime(rootfs: Path, tmp_path: Path, shim: str) -> None:
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "my-oci-runtime"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec /usr/sbin/runc "$@"\n')
    wrapper.chmod(0o755)
    config = (
        '[plugins."io.containerd.runtime.v2.task".runtimes."io.example.wrapped.v1"]\n'
        f'path = "{shim}"\n'
        f'options = {{ BinaryName = "{wrapper}" }}\n'
    )
    with running_daemon(extra_config=config) as d:
        try:
            out = run(d, "io.example.wrapped.v1", rootfs, "wrapped", "echo", "through the wrapper")
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "through the wrapper"
        finally:
            cleanup_tasks(d)
    assert "create" in calls.read_text() and "start" in calls.read_text()


def test_oom_kill_is_reported(daemon: DaemonProcess, rootfs: Path) -> None:
    cmd = [
        CTR,
        "-a",
        str(daemon.address),
        "-n",
        NS,
        "run",
        "--rm",
        "--runtime",
        "io.containerd.pyrunc.v2",
        "--memory-limit",
        "20000000",
        "--rootfs",
        str(rootfs),
        "hog",
        "/bin/busybox",
        "sh",
        "-c",
        "x=$(/bin/busybox yes | /bin/busybox head -c 200000000); echo ${#x}",
    ]
    with subprocess.Popen([CTR, "-a", str(daemon.address), "events"], stdout=subprocess.PIPE, text=True) as events:
        try:
            time.sleep(1.0)  # let ctr events subscribe before anything is published
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
            )
            time.sleep(0.5)
        finally:
            events.terminate()
        text, _ = events.communicate(timeout=10)
    assert result.returncode == 137, result.stderr
    assert text.count("/tasks/oom") == 1, text
    assert '"container_id":"hog"' in text


@pytest.mark.parametrize("shim", ["/usr/bin/containerd-shim-runc-v2", "containerd-shim-pyrunc-v2"])
def test_gvisor_through_binary_name(rootfs: Path, tmp_path: Path, shim: str) -> None:
    if shutil.which("runsc") is None:
        pytest.fail("runsc (gVisor) is not installed: apt-get install runsc")
    # gVisor cannot set up networking from the host's network namespace here, nor use the
    # host's hybrid cgroups: run it without network and without cgroups.
    wrapper = tmp_path / "runsc-nonet"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/runsc --network=none --ignore-cgroups "$@"\n')
    wrapper.chmod(0o755)
    config = (
        '[plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runsc.v1"]\n'
        f'path = "{shim}"\n'
        f'options = {{ BinaryName = "{wrapper}" }}\n'
    )
    with running_daemon(extra_config=config) as d:
        try:
            out = run(d, "io.containerd.runsc.v1", rootfs, "gv", "uname", "-r")
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "4.4.0", "gVisor's kernel answers, not the host's"
        finally:
            cleanup_tasks(d)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pause_resume_and_metrics(daemon: DaemonProcess, rootfs: Path, runtime: str) -> None:
    assert run(daemon, runtime, rootfs, "pm", "sleep", "300", detach=True).returncode == 0
    daemon.ctr("tasks", "pause", "pm", namespace=NS)
    assert task_status(daemon, "pm") == "PAUSED"
    daemon.ctr("tasks", "resume", "pm", namespace=NS)
    assert task_status(daemon, "pm") == "RUNNING"
    metrics = daemon.ctr("tasks", "metrics", "pm", namespace=NS).stdout
    usage = re.search(r"memory\.usage_in_bytes\s+(\d+)", metrics)
    assert usage and int(usage.group(1)) > 0, metrics
    assert re.search(r"cpuacct\.usage\s+\d+", metrics)
    assert "0001-01-01" not in metrics, "the metric carries a real timestamp"
