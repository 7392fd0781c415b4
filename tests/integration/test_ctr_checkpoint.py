"""Checkpoint and restore with the real ctr 1.6, through the Go shim and through ours.

A container counts in memory (``i``) and writes the count to ``/tmp/n``. After a checkpoint and a
restore the count must go on from where it was, which only a process restored from CRIU images
can do (a fresh start counts from 1).

CRIU must work on the host: the tests run ``criu check`` and skip with its error otherwise. On
kernels from 6.13 on, CRIU older than 4.1 fails there ("vdso: Unexpected rt vDSO area bounds":
the kernel split the vvar mapping into vvar + vvar_vclock). Containers run with the host network
(``--net-host``): for a private network namespace CRIU locks the network with
``iptables-restore``, which this host lacks.

ctr 1.6 offers two paths: ``ctr containers checkpoint --task`` + ``ctr containers restore --live``
(image-based container, leave-running only) and ``ctr tasks checkpoint [--exit]`` (its image has
no container data, and ctr 1.6 cannot restore it: the test then creates the task from the
checkpoint descriptor over gRPC, as containerd's ``WithTaskCheckpoint`` client option does).

The same flows also run over a fake CRIU (a runc wrapper whose checkpoint writes made-up images and
whose restore starts the bundle afresh), so that everything around CRIU is tested on any host: the
options the shims get, the images' way through the content store and back, the task states, the
clean-up. And a CRIU that fails must give an error, with the task left running.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.core.checkpoint import MEDIA_TYPE_CHECKPOINT, MEDIA_TYPE_CONFIG
from pycontainerd.tools.busybox import ImageInfo, build_image
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.rootfs import make_rootfs

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.integration, pytest.mark.root]

NS = "checkpoint-test"
# Both daemons name the runtime io.containerd.runc.v2 (the Go shim, or ours): ctr 1.6 only sends
# checkpoint options (--exit, --image-path) for that name.
RUNTIME = "io.containerd.runc.v2"
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"
SHIMS = ["go-shim", "py-shim"]


def _criu_problem() -> str:
    """Why CRIU cannot work here ("" when ``criu check`` passes)."""
    criu = shutil.which("criu")
    if criu is None:
        return "criu is not installed"
    out = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0 or "Looks good" not in out.stdout + out.stderr:
        errors = [line for line in (out.stdout + out.stderr).splitlines() if "Error (" in line and "util.c" not in line]
        return f"`{criu} check` fails: " + " | ".join(errors[:4] or [out.stderr.strip()])
    return ""


@pytest.fixture(scope="module")
def criu_works() -> None:
    problem = _criu_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageInfo:
    return build_image(tmp_path_factory.mktemp("img") / "busybox.tar", ref="docker.io/library/busybox:ckpt")


@pytest.fixture(params=SHIMS)
def daemon(request: pytest.FixtureRequest, image: ImageInfo) -> Iterator[DaemonProcess]:
    with running_daemon(go_shim=request.param == "go-shim") as d:
        try:
            d.ctr("images", "import", str(image.path), namespace=NS)
            yield d
        finally:
            _cleanup(d)


def _cleanup(d: DaemonProcess) -> None:
    if d.proc is None or d.proc.poll() is not None:
        return
    for task in d.ctr("tasks", "ls", "-q", namespace=NS, check=False).stdout.split():
        d.ctr("tasks", "kill", "-s", "9", task, namespace=NS, check=False)
        _wait_status(d, task, "STOPPED", timeout=10, check=False)
        d.ctr("tasks", "rm", "-f", task, namespace=NS, check=False)
    for cid in d.ctr("containers", "ls", "-q", namespace=NS, check=False).stdout.split():
        d.ctr("containers", "rm", cid, namespace=NS, check=False)


def _status(d: DaemonProcess, cid: str) -> str:
    for line in d.ctr("tasks", "ls", namespace=NS).stdout.splitlines()[1:]:
        parts = line.split()
        if parts[0] == cid:
            return parts[2]
    return ""


def _wait_status(d: DaemonProcess, cid: str, want: str, *, timeout: float = 20, check: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while _status(d, cid) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    if check:
        assert _status(d, cid) == want


def _read_counter(d: DaemonProcess, cid: str, exec_id: str) -> int:
    out = d.ctr("tasks", "exec", "--exec-id", exec_id, cid, "cat", "/tmp/n", namespace=NS)
    return int(out.stdout.strip())


def _wait_counter_file(path: Path, predicate: object, timeout: float = 20) -> int:
    """Poll the counter file (of a --rootfs container) until ``predicate(value)``."""
    deadline = time.monotonic() + timeout
    value = -1
    while time.monotonic() < deadline:
        try:
            value = int(path.read_text().strip() or "-1")
        except (OSError, ValueError):
            value = -1
        if predicate(value):  # type: ignore[operator]
            return value
        time.sleep(0.05)
    raise AssertionError(f"counter stuck at {value}")


def _kill_and_remove(d: DaemonProcess, cid: str, *, container: bool) -> None:
    d.ctr("tasks", "kill", "-s", "9", cid, namespace=NS)
    _wait_status(d, cid, "STOPPED")
    d.ctr("tasks", "rm", cid, namespace=NS)
    if container:
        d.ctr("containers", "rm", cid, namespace=NS)


def _manifests(d: DaemonProcess, ref: str) -> list[dict[str, Any]]:
    """The descriptors in the index of the image ``ref``."""
    for line in d.ctr("images", "ls", namespace=NS).stdout.splitlines()[1:]:
        parts = line.split()
        if parts[0] == ref:
            digest = parts[2]
            break
    else:
        raise AssertionError(f"no image {ref}")
    index = json.loads(d.ctr("content", "get", digest, namespace=NS).stdout)
    return list(index["manifests"])


def _create_from_checkpoint(d: DaemonProcess, cid: str, desc: dict[str, Any]) -> None:
    """Tasks.Create with the checkpoint descriptor, then Start: what the Go client sends for
    ``NewTask(ctx, ioCreator, WithTaskCheckpoint(image))`` (no stdio here)."""
    metadata = (("containerd-namespace", NS),)
    with grpc.insecure_channel(f"unix://{d.address}") as channel:
        tasks = tasks_pb2_grpc.TasksStub(channel)
        checkpoint = descriptor_pb2.Descriptor(media_type=desc["mediaType"], digest=desc["digest"], size=desc["size"])
        created = tasks.Create(
            tasks_pb2.CreateTaskRequest(container_id=cid, checkpoint=checkpoint), metadata=metadata, timeout=120
        )
        assert created.pid == 0, "a checkpointed task is restored by Start, not Create"
        got = tasks.Get(tasks_pb2.GetRequest(container_id=cid), metadata=metadata, timeout=30)
        assert got.process.status == 1  # CREATED
        started = tasks.Start(tasks_pb2.StartRequest(container_id=cid), metadata=metadata, timeout=120)
        assert started.pid > 0


def test_containers_checkpoint_and_restore_live(criu_works: None, daemon: DaemonProcess, image: ImageInfo) -> None:
    """``ctr c checkpoint --task --rw`` (task keeps running), then ``ctr c restore --live --rw``."""
    d, cid, ref = daemon, "counter", "example.com/checkpoints/counter:1"
    d.ctr("run", "-d", "--net-host", "--runtime", RUNTIME, image.ref, cid, "sh", "-c", COUNTER, namespace=NS)
    deadline = time.monotonic() + 20
    while _read_counter(d, cid, "r0") < 30:
        assert time.monotonic() < deadline, "the counter does not count"
        time.sleep(0.2)
    d.ctr("containers", "checkpoint", "--task", "--rw", cid, ref, namespace=NS, timeout=180)
    assert _status(d, cid) == "RUNNING", "without exit the task keeps running"
    at_checkpoint = _read_counter(d, cid, "r1")

    media = [m["mediaType"] for m in _manifests(d, ref)]
    assert MEDIA_TYPE_CHECKPOINT in media and MEDIA_TYPE_CONFIG in media, media

    _kill_and_remove(d, cid, container=True)
    d.ctr("containers", "restore", "--live", "--rw", cid, ref, namespace=NS, timeout=180)
    _wait_status(d, cid, "RUNNING")
    first = _read_counter(d, cid, "r2")
    time.sleep(0.5)
    second = _read_counter(d, cid, "r3")
    # A fresh `sh` would be at 1..10 by now; the restored one goes on from the checkpoint.
    assert first >= 30, (first, at_checkpoint)
    assert second > first
    _kill_and_remove(d, cid, container=True)
    d.ctr("images", "rm", ref, namespace=NS)


@pytest.mark.parametrize("exit_", [True, False], ids=["exit", "leave-running"])
def test_tasks_checkpoint_then_restore(criu_works: None, daemon: DaemonProcess, tmp_path: Path, exit_: bool) -> None:
    """``ctr tasks checkpoint [--exit]`` of a paused --rootfs container, restored into the same
    container: the first value written after the restore is exactly the paused count + 1."""
    d, cid = daemon, "counter"
    rootfs = make_rootfs(tmp_path / "rootfs")
    counter_file = rootfs / "tmp" / "n"
    args = ["run", "-d", "--net-host", "--runtime", RUNTIME, "--rootfs", str(rootfs), cid]
    d.ctr(*args, "/bin/busybox", "sh", "-c", COUNTER, namespace=NS)
    _wait_counter_file(counter_file, lambda v: v >= 10)
    d.ctr("tasks", "pause", cid, namespace=NS)
    _wait_status(d, cid, "PAUSED")
    paused_at = int(counter_file.read_text())

    flags = ["--exit"] if exit_ else []
    out = d.ctr("tasks", "checkpoint", *flags, cid, namespace=NS, timeout=180)
    name = out.stdout.strip()
    assert name.startswith(f"containerd.io/checkpoint/{cid}:"), out.stdout
    if exit_:
        _wait_status(d, cid, "STOPPED")
    else:
        assert _status(d, cid) == "PAUSED"
        d.ctr("tasks", "resume", cid, namespace=NS)
        _wait_counter_file(counter_file, lambda v: v > paused_at)
        d.ctr("tasks", "kill", "-s", "9", cid, namespace=NS)
        _wait_status(d, cid, "STOPPED")
    d.ctr("tasks", "rm", cid, namespace=NS)
    assert int(counter_file.read_text()) >= paused_at

    manifests = _manifests(d, name)
    checkpoints = [m for m in manifests if m["mediaType"] == MEDIA_TYPE_CHECKPOINT]
    assert len(checkpoints) == 1, manifests

    counter_file.write_text("0\n")
    _create_from_checkpoint(d, cid, checkpoints[0])
    assert _status(d, cid) == "RUNNING"
    first = _wait_counter_file(counter_file, lambda v: v != 0)
    assert first == paused_at + 1, (first, paused_at)
    later = _wait_counter_file(counter_file, lambda v: v >= first + 3)
    assert later > first
    _kill_and_remove(d, cid, container=True)
    d.ctr("images", "rm", name, namespace=NS)


@pytest.fixture
def failing_criu(tmp_path: Path) -> Iterator[Path]:
    """A ``criu`` first on PATH that always fails, as a broken CRIU would."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "criu"
    fake.write_text("#!/bin/sh\necho 'Error (fake): this criu always fails' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old}"
    try:
        yield fake
    finally:
        os.environ["PATH"] = old


@pytest.mark.parametrize("go_shim", [True, False], ids=SHIMS)
def test_failed_checkpoint_is_an_error_and_the_task_keeps_running(
    failing_criu: Path, tmp_path: Path, go_shim: bool
) -> None:
    with running_daemon(go_shim=go_shim) as d:
        try:
            rootfs = make_rootfs(tmp_path / "rootfs")
            d.ctr("run", "-d", "--net-host", "--runtime", RUNTIME, "--rootfs", str(rootfs), "c1", "/bin/busybox",
                  "sleep", "300", namespace=NS)  # fmt: skip
            out = d.ctr("tasks", "checkpoint", "c1", namespace=NS, check=False, timeout=120)
            assert out.returncode != 0
            assert "criu" in out.stderr.lower(), out.stderr
            assert _status(d, "c1") == "RUNNING", "the client resumes the task it paused"
            assert "checkpoint" not in d.ctr("images", "ls", "-q", namespace=NS).stdout
            workdir = d.root / "io.containerd.grpc.v1.tasks"
            assert workdir.is_dir()
            assert list(workdir.glob("ctrd-checkpoint*")) == [], "the dump directory is removed"
            _kill_and_remove(d, "c1", container=True)
        finally:
            _cleanup(d)


# -- the same flows over a fake CRIU, so they run on any host ---------------------------------

FAKE_CRIU_RUNC = """#!/usr/bin/python3
# runc, except that checkpoint writes a made-up image and restore starts the bundle afresh.
import os, shutil, sys

RUNC, RECORD = "/usr/sbin/runc", {record!r}
args = sys.argv[1:]
cmd = 0
while args[cmd].startswith("-"):  # global flags: --root R --log L --log-format json ...
    cmd += 2 if args[cmd] in ("--root", "--log", "--log-format", "--criu") else 1
globals_, sub, rest = args[:cmd], args[cmd], args[cmd + 1:]
if sub not in ("checkpoint", "restore"):
    os.execv(RUNC, [RUNC, *args])

def value(flag):
    return rest[rest.index(flag) + 1] if flag in rest else ""

cid, images = rest[-1], value("--image-path")
with open(os.path.join(RECORD, "calls"), "a") as fh:
    fh.write(" ".join([sub, *rest]) + "\\n")
if sub == "checkpoint":
    os.makedirs(os.path.join(images, "sub"), exist_ok=True)
    with open(os.path.join(images, "pages-1.img"), "wb") as fh:
        fh.write(os.urandom(300_000))
    with open(os.path.join(images, "sub", "inventory.img"), "w") as fh:
        fh.write(cid)
    shutil.copytree(images, os.path.join(RECORD, "dumped"), dirs_exist_ok=True)
    if "--leave-running" not in rest:
        os.execv(RUNC, [RUNC, *globals_, "delete", "--force", cid])
    sys.exit(0)
shutil.copytree(images, os.path.join(RECORD, "restored"), dirs_exist_ok=True)
create = ["create", "--bundle", value("--bundle"), "--pid-file", value("--pid-file")]
if value("--console-socket"):
    create += ["--console-socket", value("--console-socket")]
pid = os.fork()
if pid == 0:
    os.execv(RUNC, [RUNC, *globals_, *create, cid])
_, status = os.waitpid(pid, 0)
if status:
    sys.exit(1)
os.execv(RUNC, [RUNC, *globals_, "start", cid])
"""


@pytest.fixture
def fake_criu_runc(tmp_path: Path) -> Path:
    """The wrapper, given to containers with ``ctr run --runc-binary`` (ctr sets runc options for
    io.containerd.runc.v2, so the daemon's own runtime options would not apply)."""
    record = tmp_path / "record"
    record.mkdir()
    wrapper = tmp_path / "runc-fake-criu"
    wrapper.write_text(FAKE_CRIU_RUNC.format(record=str(record)))
    wrapper.chmod(0o755)
    return wrapper


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    return files_a == files_b and all((a / f).is_dir() or (a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def test_fake_criu_images_go_through_the_content_store(
    daemon: DaemonProcess, fake_criu_runc: Path, image: ImageInfo, tmp_path: Path
) -> None:
    """ctr c checkpoint --task / ctr c restore --live: what the shim dumped comes back, byte for
    byte, in the directory the shim restores from; the restored task runs."""
    d, cid, ref = daemon, "fake", "example.com/checkpoints/fake:1"
    record = tmp_path / "record"
    runc = ["--runc-binary", str(fake_criu_runc)]
    d.ctr("run", "-d", "--runtime", RUNTIME, *runc, image.ref, cid, "sleep", "300", namespace=NS)
    d.ctr("containers", "checkpoint", "--task", cid, ref, namespace=NS, timeout=120)
    assert _status(d, cid) == "RUNNING"
    calls = (record / "calls").read_text().splitlines()
    assert calls[-1].startswith("checkpoint --image-path ") and "--leave-running" in calls[-1]
    assert "--file-locks" in calls[-1], "ctr containers checkpoint asks for file locks"
    media = [m["mediaType"] for m in _manifests(d, ref)]
    assert MEDIA_TYPE_CHECKPOINT in media and MEDIA_TYPE_CONFIG in media, media
    workdir = d.root / "io.containerd.grpc.v1.tasks"
    assert list(workdir.glob("ctrd-checkpoint*")) == [], "the dump directory is removed"

    _kill_and_remove(d, cid, container=True)
    d.ctr("containers", "restore", "--live", cid, ref, namespace=NS, timeout=120)
    _wait_status(d, cid, "RUNNING")
    assert (record / "calls").read_text().splitlines()[-1].startswith("restore ")
    assert _same_tree(record / "dumped", record / "restored")
    assert not (workdir / "restore" / NS / cid).exists(), "the unpacked images are removed after Start"
    _kill_and_remove(d, cid, container=True)


def test_fake_criu_checkpoint_exit_stops_the_task_and_restores_into_it(
    daemon: DaemonProcess, fake_criu_runc: Path, tmp_path: Path
) -> None:
    d, cid = daemon, "fake"
    record = tmp_path / "record"
    rootfs = make_rootfs(tmp_path / "rootfs")
    args = ["--runtime", RUNTIME, "--runc-binary", str(fake_criu_runc), "--rootfs", str(rootfs), cid]
    d.ctr("run", "-d", *args, "/bin/busybox", "sleep", "300", namespace=NS)
    name = d.ctr("tasks", "checkpoint", "--exit", cid, namespace=NS, timeout=120).stdout.strip()
    assert "--leave-running" not in (record / "calls").read_text().splitlines()[-1]
    _wait_status(d, cid, "STOPPED")
    d.ctr("tasks", "rm", cid, namespace=NS)
    checkpoints = [m for m in _manifests(d, name) if m["mediaType"] == MEDIA_TYPE_CHECKPOINT]
    assert len(checkpoints) == 1
    _create_from_checkpoint(d, cid, checkpoints[0])
    assert _status(d, cid) == "RUNNING"
    assert _same_tree(record / "dumped", record / "restored")
    _kill_and_remove(d, cid, container=True)
    d.ctr("images", "rm", name, namespace=NS)
