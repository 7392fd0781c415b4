"""``pyctr sandboxes``: run, list, inspect and remove sandboxes (Sandbox Store + Controller APIs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc

from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2 as pb
from pycontainerd.api.containerd.services.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from pycontainerd.api.containerd.types import sandbox_pb2 as types_pb
from pycontainerd.cli._client import TIMEOUT, channel, metadata

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sandboxes`` and its subcommands."""
    sandboxes = sub.add_parser("sandboxes", aliases=["sandbox", "sb"], help="run and manage sandboxes (pods)")
    ssub = sandboxes.add_subparsers(dest="sandboxes_command", metavar="SUBCOMMAND", required=True)
    run = ssub.add_parser("run", help="create and start a sandbox; prints its pause process's PID")
    run.add_argument("id", help="sandbox ID")
    run.add_argument("--sandboxer", default="podsandbox", help="controller (default podsandbox)")
    run.add_argument("--runtime", default="io.containerd.runc.v2", help="runtime of the sandbox's process")
    run.add_argument("--hostname", default="", help="hostname inside the sandbox (default: its ID)")
    run.add_argument("--netns", default="", help="join this network namespace instead of making one")
    run.add_argument("--label", action="append", default=[], help="KEY=VALUE label (repeatable)")
    run.set_defaults(run=_run)
    ls = ssub.add_parser("ls", aliases=["list"], help="list sandboxes with their state")
    ls.add_argument("filters", nargs="*", help="containerd filters, e.g. labels.app==web")
    ls.set_defaults(run=_ls)
    inspect = ssub.add_parser("inspect", help="the sandbox's record and status as JSON")
    inspect.add_argument("id")
    inspect.set_defaults(run=_inspect)
    rm = ssub.add_parser("rm", aliases=["remove"], help="stop and remove sandboxes")
    rm.add_argument("ids", nargs="+")
    rm.add_argument("--timeout", type=int, default=10, help="seconds before SIGKILL (default 10)")
    rm.set_defaults(run=_rm)


def _stubs(ch: grpc.Channel) -> tuple[pb_grpc.StoreStub, pb_grpc.ControllerStub]:
    return pb_grpc.StoreStub(ch), pb_grpc.ControllerStub(ch)


def _run(args: argparse.Namespace) -> int:
    labels = dict(item.partition("=")[::2] for item in args.label)
    record = types_pb.Sandbox(
        sandbox_id=args.id,
        runtime=types_pb.Sandbox.Runtime(name=args.runtime),
        labels=labels,
        sandboxer=args.sandboxer,
    )
    md = metadata(args)
    with channel(args.address) as ch:
        store, controller = _stubs(ch)
        store.Create(pb.StoreCreateRequest(sandbox=record), metadata=md, timeout=TIMEOUT)
        annotations = {"io.kubernetes.cri.hostname": args.hostname} if args.hostname else {}
        controller.Create(
            pb.ControllerCreateRequest(
                sandbox_id=args.id, sandboxer=args.sandboxer, netns_path=args.netns, annotations=annotations
            ),
            metadata=md,
            timeout=TIMEOUT,
        )
        started = controller.Start(
            pb.ControllerStartRequest(sandbox_id=args.id, sandboxer=args.sandboxer), metadata=md, timeout=TIMEOUT
        )
    print(started.pid)
    return 0


def _ls(args: argparse.Namespace) -> int:
    md = metadata(args)
    with channel(args.address) as ch:
        store, controller = _stubs(ch)
        records = store.List(pb.StoreListRequest(filters=args.filters), metadata=md, timeout=TIMEOUT).list
        print(f"{'ID':<24} {'SANDBOXER':<12} {'STATE':<18} {'PID':>8}  RUNTIME")
        for r in records:
            try:
                st = controller.Status(
                    pb.ControllerStatusRequest(sandbox_id=r.sandbox_id, sandboxer=r.sandboxer),
                    metadata=md,
                    timeout=TIMEOUT,
                )
                state, pid = st.state, str(st.pid or "-")
            except grpc.RpcError:
                state, pid = "UNKNOWN", "-"
            print(f"{r.sandbox_id:<24} {r.sandboxer or '-':<12} {state:<18} {pid:>8}  {r.runtime.name}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    md = metadata(args)
    with channel(args.address) as ch:
        store, controller = _stubs(ch)
        r = store.Get(pb.StoreGetRequest(sandbox_id=args.id), metadata=md, timeout=TIMEOUT).sandbox
        st = controller.Status(
            pb.ControllerStatusRequest(sandbox_id=args.id, sandboxer=r.sandboxer), metadata=md, timeout=TIMEOUT
        )
    doc = {
        "id": r.sandbox_id,
        "sandboxer": r.sandboxer,
        "runtime": r.runtime.name,
        "labels": dict(r.labels),
        "created_at": r.created_at.ToJsonString(),
        "status": {"state": st.state, "pid": st.pid},
    }
    print(json.dumps(doc, indent=2))
    return 0


def _rm(args: argparse.Namespace) -> int:
    md = metadata(args)
    with channel(args.address) as ch:
        store, controller = _stubs(ch)
        for sid in args.ids:
            r = store.Get(pb.StoreGetRequest(sandbox_id=sid), metadata=md, timeout=TIMEOUT).sandbox
            controller.Stop(
                pb.ControllerStopRequest(sandbox_id=sid, sandboxer=r.sandboxer, timeout_secs=args.timeout),
                metadata=md,
                timeout=TIMEOUT + args.timeout,
            )
            controller.Shutdown(
                pb.ControllerShutdownRequest(sandbox_id=sid, sandboxer=r.sandboxer), metadata=md, timeout=TIMEOUT
            )
            store.Delete(pb.StoreDeleteRequest(sandbox_id=sid), metadata=md, timeout=TIMEOUT)
            print(sid)
    return 0
