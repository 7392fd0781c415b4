"""``pyctr tasks``: start, list, signal, pause, exec into, attach to and delete tasks."""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from pycontainerd.cli._app import UsageError, add_command, command, group, print_json, show, table, wants_json
from pycontainerd.cli._spec import STOP_SIGNAL_LABEL, parse_signal
from pycontainerd.cli._stdio import DEFAULT_FIFO_DIR, Pumps, Stdio, follow_window, forward_signals, remove_fifos
from pycontainerd.cli._userns import task_options
from pycontainerd.client.tasks import IO
from pycontainerd.core.containers import AnyValue
from pycontainerd.errdefs import NotFound

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client
    from pycontainerd.core.containers import Container


def io_flags(p: argparse.ArgumentParser) -> None:
    """Where the process's stdio goes."""
    p.add_argument("--null-io", action="store_true", help="send all output to /dev/null")
    p.add_argument("--log-uri", default="", help="log URI for the output (file:///path or binary:///bin)")
    p.add_argument("--fifo-dir", default="", help=f"where to make the stdio FIFOs (default {DEFAULT_FIFO_DIR})")
    p.add_argument("--pid-file", default="", help="write the task's PID to this file")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tasks`` and its subcommands."""
    tasks = group(
        sub,
        "tasks",
        "manage tasks (a container's running processes)",
        aliases=["task", "t"],
        details="A task is a container running: its init process, plus any `exec`ed ones.",
    )
    p = add_command(
        tasks,
        "start",
        "start a created container; stays attached to its stdio and exits with its status",
        examples=["pyctr tasks start web1", "pyctr tasks start -d web1"],
    )
    p.add_argument("id", help="container ID")
    p.add_argument("-d", "--detach", action="store_true", help="return once the task has started")
    io_flags(p)
    p.set_defaults(run=command(_start))

    p = add_command(tasks, "ls", "list tasks", aliases=["list"], listing=True, examples=["pyctr tasks ls"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the task IDs")
    p.set_defaults(run=command(_ls))

    p = add_command(tasks, "ps", "list a task's processes", listing=True, examples=["pyctr tasks ps web1"])
    p.add_argument("id")
    p.set_defaults(run=command(_ps))

    p = add_command(
        tasks,
        "kill",
        "signal a task (default: its image's stop signal, else SIGTERM)",
        examples=["pyctr tasks kill web1", "pyctr tasks kill -s SIGKILL web1", "pyctr tasks kill --exec-id e1 web1"],
    )
    p.add_argument("id")
    p.add_argument("-s", "--signal", default="", help="signal name or number")
    p.add_argument("--exec-id", default="", help="signal this exec instead of the init process")
    p.add_argument("-a", "--all", action="store_true", help="signal every process of the task")
    p.set_defaults(run=command(_kill))

    for name, summary in (("pause", "freeze a task"), ("resume", "thaw a paused task")):
        p = add_command(tasks, name, summary, examples=[f"pyctr tasks {name} web1"])
        p.add_argument("id")
        p.set_defaults(run=command(_pause if name == "pause" else _resume))

    p = add_command(
        tasks,
        "rm",
        "delete stopped tasks (with -f, kill running ones first)",
        aliases=["remove", "delete", "del"],
        examples=["pyctr tasks rm web1", "pyctr tasks rm -f web1"],
    )
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("-f", "--force", action="store_true", help="SIGKILL a running task, then delete it")
    p.add_argument("--exec-id", default="", help="delete this exited exec instead")
    p.set_defaults(run=command(_rm))

    p = add_command(
        tasks,
        "exec",
        "run another process in a running task; exits with its status",
        examples=["pyctr tasks exec web1 ps", "pyctr tasks exec -t --exec-id sh1 web1 sh"],
    )
    p.add_argument("id")
    p.add_argument("command", nargs="...", help="command and arguments")
    p.add_argument("--exec-id", default="", help="the exec's ID (default: generated)")
    p.add_argument("-t", "--tty", action="store_true", help="give the process a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="return once the process has started")
    p.add_argument("--cwd", default="", help="working directory (default: the container's)")
    p.add_argument("--user", default="", help="UID[:GID] to run as")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    p.add_argument("--fifo-dir", default="", help=f"where to make the stdio FIFOs (default {DEFAULT_FIFO_DIR})")
    p.set_defaults(run=command(_exec))

    p = add_command(
        tasks,
        "attach",
        "attach to the stdio of a running task (started detached, with FIFOs)",
        examples=["pyctr run -d IMAGE web1 && pyctr tasks attach web1"],
    )
    p.add_argument("id")
    p.set_defaults(run=command(_attach))

    p = add_command(
        tasks,
        "metrics",
        "show a task's cgroup statistics once",
        aliases=["metric"],
        listing=True,
        examples=["pyctr tasks metrics web1", "pyctr tasks metrics --format json web1"],
    )
    p.add_argument("id")
    p.set_defaults(run=command(_metrics))

    p = add_command(
        tasks,
        "checkpoint",
        "checkpoint a running task with CRIU",
        examples=["pyctr tasks checkpoint --image-path /tmp/ckpt web1", "pyctr tasks checkpoint --exit web1"],
        details="Without --image-path the checkpoint goes to the content store; its descriptors are printed.",
    )
    p.add_argument("id")
    p.add_argument("--exit", action="store_true", help="stop the task after the checkpoint")
    p.add_argument("--image-path", default="", help="write the CRIU images to this directory")
    p.add_argument("--work-path", default="", help="CRIU work files and logs")
    p.set_defaults(run=command(_checkpoint))


# -- running a task on this terminal ---------------------------------------------------------


def _stop_signal(container: Container) -> int:
    return parse_signal(container.labels.get(STOP_SIGNAL_LABEL) or "SIGTERM")


async def run_task(args: argparse.Namespace, client: Client, container: Container, *, remove: bool = False) -> int:
    """Create and start ``container``'s task on this terminal's stdio; its exit status.

    ``args``: ``detach``, ``null_io``, ``log_uri``, ``fifo_dir``, ``pid_file`` (and ``tty`` from
    the spec). Detached, the FIFOs stay for ``tasks attach`` and 0 is returned once it runs."""
    spec = json.loads(container.spec.value) if container.spec else {}
    terminal = bool(spec.get("process", {}).get("terminal"))
    rootfs = []
    if container.snapshot_key:
        rootfs = await client.snapshots(container.snapshotter).mounts(container.snapshot_key)
    stdio: Stdio | None = None
    if args.null_io:
        io = IO()
    elif args.log_uri:
        uri = args.log_uri if "://" in args.log_uri else f"file://{args.log_uri}"
        io = IO(stdout=uri, stderr=uri)
    else:
        stdio = Stdio(args.fifo_dir, terminal=terminal, keep=args.detach)
        io = stdio.io
    # Detached too, the FIFOs are read while the task is created: a shim may wait for a reader
    # before it opens its write ends (the Go shim does), as it may with ctr.
    pumps = Pumps(io, forward_stdin=not args.detach) if stdio is not None else None
    try:
        await client.tasks.create(container.id, io=io, rootfs=rootfs, options=task_options(container))
        if pumps is None or args.detach:
            pid = await client.tasks.start(container.id)
            _pid_file(args, pid)
            return 0
        from pycontainerd.aio import spawn

        waiting = spawn(client.tasks.wait(container.id))
        try:
            if terminal:
                pumps.raw_terminal()
            pid = await client.tasks.start(container.id)
            _pid_file(args, pid)
            pumps.start_stdin(lambda: _close_stdin(client, container.id))
            if terminal:
                follow_window(client.tasks, container.id)
            else:
                forward_signals(client.tasks, container.id)
            ended = await waiting
        finally:
            waiting.cancel()
        # Delete first: a shim closes its ends of the FIFOs when the process is deleted (having
        # flushed the output to us), and only then do our readers see the end of the output.
        await client.tasks.delete(container.id)
        await pumps.drain()
        return ended.exit_status
    except BaseException:
        with contextlib.suppress(Exception):
            await client.tasks.kill(container.id, 9)
        with contextlib.suppress(Exception):
            await client.tasks.delete(container.id)
        raise
    finally:
        if pumps is not None:
            pumps.close()
        if stdio is not None:
            remove_fifos(stdio)


async def _close_stdin(client: Client, container_id: str, exec_id: str = "") -> None:
    with contextlib.suppress(Exception):
        await client.tasks.close_stdin(container_id, exec_id)


def _pid_file(args: argparse.Namespace, pid: int) -> None:
    if getattr(args, "pid_file", ""):
        with open(args.pid_file, "w") as f:
            f.write(str(pid))


# -- the subcommands -----------------------------------------------------------------------


async def _start(args: argparse.Namespace, client: Client) -> int:
    container = await client.containers.get(args.id)
    return await run_task(args, client, container)


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.tasks.list()
    show(
        args,
        found,
        ["TASK", "PID", "STATUS"],
        lambda t: [t.container_id, t.pid, t.status.name],
        quiet=lambda t: t.container_id,
    )


async def _ps(args: argparse.Namespace, client: Client) -> None:
    found = await client.tasks.pids(args.id)
    records = []
    for p in found:
        info: dict[str, Any] = {}
        if p.info is not None:
            info = _decode_process_info(p.info)
        records.append({"pid": p.pid, "info": info})
    show(args, records, ["PID", "INFO"], lambda r: [r["pid"], json.dumps(r["info"]) if r["info"] else "-"])


def _decode_process_info(info: AnyValue) -> dict[str, Any]:
    from pycontainerd.api.containerd.types.runc.options import oci_pb2

    if info.type_url.endswith("ProcessDetails"):
        return {"exec_id": oci_pb2.ProcessDetails.FromString(info.value).exec_id}
    return {"type_url": info.type_url}


async def _kill(args: argparse.Namespace, client: Client) -> None:
    sig = parse_signal(args.signal) if args.signal else _stop_signal(await client.containers.get(args.id))
    if args.all and args.exec_id:
        raise UsageError("--all and --exec-id cannot be combined")
    await client.tasks.kill(args.id, sig, exec_id=args.exec_id, all=args.all)


async def _pause(args: argparse.Namespace, client: Client) -> None:
    await client.tasks.pause(args.id)


async def _resume(args: argparse.Namespace, client: Client) -> None:
    await client.tasks.resume(args.id)


async def _rm(args: argparse.Namespace, client: Client) -> int:
    import asyncio
    import signal

    failed = 0
    for task_id in args.ids:
        try:
            if args.exec_id:
                await client.tasks.delete_process(task_id, args.exec_id)
                continue
            task = await client.tasks.get(task_id)
            if task.status.name not in ("STOPPED", "CREATED") and args.force:
                waiting = asyncio.ensure_future(client.tasks.wait(task_id))
                await client.tasks.kill(task_id, signal.SIGKILL, all=True)
                await asyncio.wait_for(waiting, 30)
            elif task.status.name not in ("STOPPED", "CREATED"):
                raise RuntimeError(f"task {task_id} is {task.status.name.lower()}: stop it or use -f")
            ended = await client.tasks.delete(task_id)
            _remove_fifo_dir(task.io)
            if ended.exit_status:
                print(f"WARN[0000] task {task_id} exit with non-zero exit code {ended.exit_status}", file=sys.stderr)
        except Exception as exc:
            print(f"pyctr: unable to delete task {task_id}: {exc}", file=sys.stderr)
            failed = 1
    return failed


def _remove_fifo_dir(io: IO) -> None:
    """The FIFO directory a detached ``run``/``tasks start`` left for ``attach``, once the task is gone."""
    import os
    import shutil

    parent = os.path.dirname(io.stdout)
    if os.path.basename(parent).startswith("pyctr-") and "://" not in io.stdout:
        shutil.rmtree(parent, ignore_errors=True)


async def _exec(args: argparse.Namespace, client: Client) -> int:
    if not args.command:
        raise UsageError("exec needs a command: pyctr tasks exec ID CMD [ARG...]")
    container = await client.containers.get(args.id)
    spec = json.loads(container.spec.value) if container.spec else {}
    process: dict[str, Any] = dict(spec.get("process") or {})
    process["args"] = list(args.command)
    process["terminal"] = args.tty
    if args.cwd:
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.env:
        process["env"] = [*process.get("env", []), *args.env]
    exec_id = args.exec_id or f"exec-{secrets.token_hex(6)}"
    if args.detach:
        await client.tasks.exec(args.id, exec_id, process)
        await client.tasks.start(args.id, exec_id)
        print(exec_id)
        return 0
    stdio = Stdio(args.fifo_dir, terminal=args.tty)
    pumps = Pumps(stdio.io)
    from pycontainerd.aio import spawn

    try:
        await client.tasks.exec(args.id, exec_id, process, stdio.io)
        waiting = spawn(client.tasks.wait(args.id, exec_id))
        try:
            if args.tty:
                pumps.raw_terminal()
            await client.tasks.start(args.id, exec_id)
            pumps.start_stdin(lambda: _close_stdin(client, args.id, exec_id))
            if args.tty:
                follow_window(client.tasks, args.id, exec_id)
            else:
                forward_signals(client.tasks, args.id, exec_id)
            ended = await waiting
        finally:
            waiting.cancel()
        with contextlib.suppress(NotFound):
            await client.tasks.delete_process(args.id, exec_id)
        await pumps.drain()
        return ended.exit_status
    finally:
        pumps.close()
        remove_fifos(stdio)


async def _attach(args: argparse.Namespace, client: Client) -> int:
    task = await client.tasks.get(args.id)
    if not task.io.stdout:
        raise UsageError(f"task {args.id} has no stdio FIFOs to attach to (started with --null-io or --log-uri?)")
    from pycontainerd.aio import spawn

    pumps = Pumps(task.io)
    waiting = spawn(client.tasks.wait(args.id))
    try:
        if task.io.terminal:
            pumps.raw_terminal()
            follow_window(client.tasks, args.id)
        else:
            forward_signals(client.tasks, args.id)
        pumps.start_stdin(lambda: _close_stdin(client, args.id))
        ended = await waiting
        await pumps.drain()
        return ended.exit_status
    finally:
        waiting.cancel()
        pumps.close()


METRIC_ROWS = (
    ("memory.usage_in_bytes", ("memory", "usage", "usage")),
    ("memory.limit_in_bytes", ("memory", "usage", "limit")),
    ("memory.stat.cache", ("memory", "cache")),
    ("cpuacct.usage", ("cpu", "usage", "total")),
    ("cpuacct.usage_percpu", ("cpu", "usage", "perCpu")),
    ("pids.current", ("pids", "current")),
    ("pids.limit", ("pids", "limit")),
)
METRIC_ROWS_V2 = (
    ("memory.usage", ("memory", "usage")),
    ("memory.usage_limit", ("memory", "usageLimit")),
    ("cpu.usage_usec", ("cpu", "usageUsec")),
    ("pids.current", ("pids", "current")),
    ("pids.limit", ("pids", "limit")),
)


def decode_metrics(data: AnyValue | None) -> tuple[str, dict[str, Any]]:
    """(``v1``/``v2``/``""``, the cgroup statistics as a dict)."""
    if data is None:
        return "", {}
    from pycontainerd.api.containerd.cgroups.v1 import metrics_pb2 as v1
    from pycontainerd.api.containerd.cgroups.v2 import metrics_pb2 as v2

    name = data.type_url.rsplit("/", 1)[-1]
    for version, module in (("v1", v1), ("v2", v2)):
        if name == module.Metrics.DESCRIPTOR.full_name:
            message = module.Metrics.FromString(data.value)
            return version, json_format.MessageToDict(message)
    return "", {}


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> object:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return "-"
        value = value.get(key, 0)
    return value


async def _metrics(args: argparse.Namespace, client: Client) -> None:
    found = await client.tasks.metrics([args.id])
    if not found:
        raise NotFound(f"task {args.id}: no metrics")
    metric = found[0]
    version, stats = decode_metrics(metric.data)
    if wants_json(args):
        print_json({"id": metric.id, "timestamp": metric.timestamp, "cgroup": version, "metrics": stats})
        return
    rows = METRIC_ROWS if version == "v1" else METRIC_ROWS_V2
    print(table(["ID", "TIMESTAMP"], [[metric.id, _timestamp(metric.timestamp)]]))
    print()
    print(table(["METRIC", "VALUE"], [[name, _metric_text(_dig(stats, path))] for name, path in rows]))


def _metric_text(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _timestamp(ns: int) -> str:
    from pycontainerd.cli._app import rfc3339

    return rfc3339(ns)


async def _checkpoint(args: argparse.Namespace, client: Client) -> None:
    from pycontainerd.api.containerd.types.runc.options import oci_pb2

    options = oci_pb2.CheckpointOptions(exit=args.exit, image_path=args.image_path, work_path=args.work_path)
    descriptors = await client.tasks.checkpoint(
        args.id, AnyValue("containerd.runc.v1.CheckpointOptions", options.SerializeToString())
    )
    if args.image_path:
        print(args.image_path)
        return
    show(args, descriptors, ["DIGEST", "SIZE", "MEDIA TYPE"], lambda d: [d.digest, d.size, d.media_type])
