"""Checkpoint/restore in our shim: options to runc flags, and the task flow over a recording fake runc."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import tarfile
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import any_pb2

from pycontainerd.api.containerd.runtime.task.v2 import shim_pb2 as pb
from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.archive.tar import apply_tar
from pycontainerd.core.checkpoint import pack_dir
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument
from pycontainerd.runc_shim import checkpoint as cr
from pycontainerd.runc_shim import task as task_module
from pycontainerd.runc_shim.reaper import Reaper, spawn
from pycontainerd.runc_shim.runc import CriuOptions
from pycontainerd.runc_shim.task import TaskService

if TYPE_CHECKING:
    from pathlib import Path

    from google.protobuf.message import Message


def _options(**fields: Any) -> any_pb2.Any:
    value = oci_pb2.CheckpointOptions(**fields).SerializeToString()
    return any_pb2.Any(type_url="containerd.runc.v1.CheckpointOptions", value=value)


def test_every_checkpoint_option_becomes_its_runc_flag(tmp_path: Path) -> None:
    opts = _options(
        exit=True,
        open_tcp=True,
        external_unix_sockets=True,
        terminal=True,
        file_locks=True,
        empty_namespaces=["network", "ipc"],
        cgroups_mode="full",
        work_path=str(tmp_path / "w"),
        parent_path="/prev",
    )
    todo = cr.plan("/img", opts, str(tmp_path))
    assert todo.exit and todo.keep_work
    assert todo.criu.args() == [
        "--image-path", "/img", "--work-path", str(tmp_path / "w"), "--parent-path", "/prev",
        "--tcp-established", "--ext-unix-sk", "--shell-job", "--manage-cgroups-mode", "full",
        "--file-locks", "--empty-ns", "network", "--empty-ns", "ipc",
    ]  # fmt: skip
    # runc restore has no --parent-path.
    assert "--parent-path" not in todo.criu.args(restore=True)


def test_defaults_leave_running_and_work_in_the_task_work_dir(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    todo = cr.plan("/img", None, str(tmp_path))
    assert not todo.exit and not todo.keep_work
    assert todo.criu == CriuOptions(image_path="/img", work_path=str(tmp_path / "work" / "criu-work"))
    # A type URL with a prefix is the same type.
    prefixed = _options(exit=True)
    prefixed.type_url = "types.containerd.io/containerd.runc.v1.CheckpointOptions"
    assert cr.plan("/img", prefixed, str(tmp_path)).exit


def test_wrong_option_types_and_missing_paths_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"containerd\.runc\.v1\.Options"):
        cr.plan("/img", any_pb2.Any(type_url="containerd.runc.v1.Options"), str(tmp_path))
    with pytest.raises(InvalidArgument, match="path"):
        cr.plan("", None, str(tmp_path))


def test_restore_works_in_criu_work_path_or_the_bundle_work_dir(tmp_path: Path) -> None:
    assert cr.restore_options("/img", str(tmp_path), "/criu-work").work_path == "/criu-work"
    assert cr.restore_options("/img", str(tmp_path)).work_path == str(tmp_path)
    (tmp_path / "work").mkdir()
    assert cr.restore_options("/img", str(tmp_path)).work_path == str(tmp_path / "work")


def test_failure_message_quotes_criu_and_keeps_its_log(tmp_path: Path) -> None:
    work, bundle = tmp_path / "work", tmp_path / "bundle"
    work.mkdir()
    bundle.mkdir()
    lines = [f"(00.{i}) Error (criu/x.c:{i}): problem {i}\n" for i in range(5)]
    (work / "dump.log").write_text("(00.0) Warn (criu/kerndat.c:1): noise\n" + "".join(lines))
    kept = cr.keep_log(str(work), "dump.log", str(bundle))
    assert kept == str(bundle / "criu-dump.log")
    message = cr.failure_message("runc checkpoint failed: criu failed", kept)
    assert message.startswith("runc checkpoint failed: criu failed: ")
    assert "problem 2" in message and "problem 4" in message and "problem 1" not in message
    assert message.endswith(f"path= {kept}")
    # CRIU never ran: no log, and no path that does not exist.
    assert cr.keep_log(str(tmp_path / "nowhere"), "dump.log", str(bundle)) == ""
    assert cr.failure_message("runc checkpoint failed: boom", "") == "runc checkpoint failed: boom"


def test_pack_dir_is_a_relative_sorted_tar_that_applies_back(tmp_path: Path) -> None:
    src = tmp_path / "images"
    (src / "sub").mkdir(parents=True)
    (src / "pages-1.img").write_bytes(os.urandom(100_000))
    (src / "inventory.img").write_bytes(b"inv")
    (src / "sub" / "deep.img").write_bytes(b"deep")
    (src / "link").symlink_to("inventory.img")
    buf = io.BytesIO()
    size = pack_dir(str(src), buf.write)
    assert size == len(buf.getvalue())
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        names = tf.getnames()
    assert names == ["sub", "inventory.img", "link", "pages-1.img", "sub/deep.img"]
    again = io.BytesIO()
    pack_dir(str(src), again.write)
    assert again.getvalue() == buf.getvalue(), "the same images give the same blob"
    out = tmp_path / "out"
    out.mkdir()
    apply_tar(io.BytesIO(buf.getvalue()), out)
    assert (out / "pages-1.img").read_bytes() == (src / "pages-1.img").read_bytes()
    assert (out / "sub" / "deep.img").read_bytes() == b"deep"
    assert os.readlink(out / "link") == "inventory.img"


# -- the task flow, over a fake runc that records its arguments ------------------------------

FAKE_RUNC = r"""#!/bin/sh
echo "$@" >> "$FAKE_RUNC_RECORD"
prev=""
for a in "$@"; do
  case "$prev" in
    --pid-file) pidfile="$a" ;;
    --work-path) work="$a" ;;
  esac
  prev="$a"
done
case " $* " in
  *" restore "*) cp "$FAKE_RUNC_CONTAINER_PID" "$pidfile" ;;
  *" checkpoint "*)
    mkdir -p "$work"
    if [ -e "$FAKE_RUNC_FAIL" ]; then
      printf '(00.1) Warn  (criu/kerndat.c:1): noise\n(00.2) Error (criu/files-reg.c:1790): boom\n' > "$work/dump.log"
      echo "criu failed: type NOTIFY errno 0" >&2
      exit 1
    fi ;;
esac
exit 0
"""


class _NoOOM:
    def __init__(self, pid: int, on_oom: object) -> None:
        self.pid = pid

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_restore_at_start_then_checkpoint_then_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runc = tmp_path / "fake-runc"
    runc.write_text(FAKE_RUNC)
    runc.chmod(0o755)
    record, fail, container_pid = tmp_path / "record", tmp_path / "fail", tmp_path / "container.pid"
    monkeypatch.setenv("FAKE_RUNC_RECORD", str(record))
    monkeypatch.setenv("FAKE_RUNC_FAIL", str(fail))
    monkeypatch.setenv("FAKE_RUNC_CONTAINER_PID", str(container_pid))
    monkeypatch.setattr(task_module, "OOMWatcher", _NoOOM)
    bundle, images, root = tmp_path / "bundle", tmp_path / "images", tmp_path / "root"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "work").mkdir()
    images.mkdir()
    events: list[tuple[str, Message]] = []

    def calls() -> list[list[str]]:
        lines = record.read_text().splitlines() if record.exists() else []
        # Drop the global flags: --root R --log L --log-format json.
        return [line.split()[6:] for line in lines]

    async def main() -> None:
        reaper = Reaper()
        reaper.install()
        shim = TaskService(
            reaper,
            namespace="ns",
            runc_root=str(root),
            publish=lambda t, e: events.append((t, e)),
            on_empty=lambda: None,
        )
        options = oci_pb2.Options(binary_name=str(runc)).SerializeToString()
        created = await shim.create(
            None,
            pb.CreateTaskRequest(
                id="c1",
                bundle=str(bundle),
                checkpoint=str(images),
                options=any_pb2.Any(type_url="containerd.runc.v1.Options", value=options),
            ),
        )
        assert created.pid == 0
        assert calls() == [], "nothing runs before Start"
        state = await shim.state(None, pb.StateRequest(id="c1"))
        assert (state.status, state.pid) == (1, 0)  # CREATED, no process yet
        assert events[-1][0] == "/tasks/create" and events[-1][1].checkpoint == str(images)  # type: ignore[attr-defined]
        with pytest.raises(FailedPrecondition, match="created state"):
            await shim.checkpoint(None, pb.CheckpointTaskRequest(id="c1", path=str(tmp_path / "ck")))

        sleeper = spawn(["sleep", "60"])
        container_pid.write_text(str(sleeper))
        started = await shim.start(None, pb.StartRequest(id="c1"))
        assert started.pid == sleeper
        assert calls()[-1] == [
            "restore", "--detach", "--no-subreaper", "--bundle", str(bundle), "--pid-file", str(bundle / "init.pid"),
            "--image-path", str(images), "--work-path", str(bundle / "work"), "c1",
        ]  # fmt: skip
        state = await shim.state(None, pb.StateRequest(id="c1"))
        assert (state.status, state.pid) == (2, sleeper)  # RUNNING
        assert events[-1][0] == "/tasks/start"

        ck = tmp_path / "ck"
        request = pb.CheckpointTaskRequest(id="c1", path=str(ck))
        request.options.CopyFrom(_options(file_locks=True, empty_namespaces=["network"]))
        await shim.checkpoint(None, request)
        work = bundle / "work" / "criu-work"
        assert calls()[-1] == [
            "checkpoint", "--image-path", str(ck), "--work-path", str(work), "--file-locks",
            "--empty-ns", "network", "--leave-running", "c1",
        ]  # fmt: skip
        assert not work.exists(), "the default work directory is removed"

        fail.touch()
        with pytest.raises(FailedPrecondition) as err:
            await shim.checkpoint(None, pb.CheckpointTaskRequest(id="c1", path=str(ck)))
        message = str(err.value)
        assert "criu failed" in message and "Error (criu/files-reg.c:1790): boom" in message
        assert message.endswith(f"path= {bundle / 'criu-dump.log'}")
        assert (bundle / "criu-dump.log").exists() and not work.exists()

        os.kill(sleeper, signal.SIGKILL)
        await shim.wait(None, pb.WaitRequest(id="c1"))
        deleted = await shim.delete(None, pb.DeleteRequest(id="c1"))
        assert deleted.exit_status == 128 + signal.SIGKILL
        assert calls()[-1] == ["delete", "--force", "c1"]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_task_never_restored_is_deleted_without_runc_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runc = tmp_path / "fake-runc"
    runc.write_text(FAKE_RUNC)
    runc.chmod(0o755)
    record = tmp_path / "record"
    monkeypatch.setenv("FAKE_RUNC_RECORD", str(record))
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)

    async def main() -> None:
        reaper = Reaper()
        reaper.install()
        shim = TaskService(
            reaper, namespace="ns", runc_root=str(tmp_path / "root"), publish=lambda t, e: None, on_empty=lambda: None
        )
        options = oci_pb2.Options(binary_name=str(runc)).SerializeToString()
        await shim.create(
            None,
            pb.CreateTaskRequest(
                id="c1",
                bundle=str(bundle),
                checkpoint=str(tmp_path / "images"),
                options=any_pb2.Any(type_url="containerd.runc.v1.Options", value=options),
            ),
        )
        await shim.delete(None, pb.DeleteRequest(id="c1"))

    asyncio.run(asyncio.wait_for(main(), 30))
    assert [line.split()[6:] for line in record.read_text().splitlines()] == [["delete", "--force", "c1"]]
