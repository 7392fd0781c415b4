"""``pyctr gc``: what a collection would remove, why something is kept, collect now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.api.pycontainerd.services.gc.v1 import gc_pb2, gc_pb2_grpc
from pycontainerd.cli._client import TIMEOUT, channel, human_size, metadata

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``gc`` and its subcommands."""
    gc = sub.add_parser("gc", help="inspect and run garbage collection")
    gc_sub = gc.add_subparsers(dest="gc_command", metavar="SUBCOMMAND", required=True)
    gc_sub.add_parser("plan", help="list what a collection would delete and the bytes it frees (deletes nothing)")
    why = gc_sub.add_parser("why", help="show the chain of references (or the lease) that keeps an object")
    why.add_argument("id", help="a digest (or another object's ID with --kind)")
    why.add_argument("--kind", default="content", help="content (default), ingest, lease, snapshot/<snapshotter>...")
    gc_sub.add_parser("collect", help="collect now and list what was deleted")
    gc.set_defaults(run=run)


def _print_removals(reply: gc_pb2.PlanResponse, verb: str) -> None:
    print(f"{'KIND':<22} {'NAMESPACE':<14} {'SIZE':>10}  ID")
    for r in reply.removals:
        size = human_size(r.size) if r.size else "-"
        print(f"{r.kind:<22} {r.namespace or '-':<14} {size:>10}  {r.id}")
    print(
        f"{len(reply.removals)} objects {verb}, {human_size(reply.bytes_freed)} freed on disk "
        f"(computed in {reply.duration_seconds * 1000:.1f} ms)"
    )


def run(args: argparse.Namespace) -> int:
    """Run a ``gc`` subcommand."""
    with channel(args.address) as ch:
        stub = gc_pb2_grpc.GCStub(ch)
        if args.gc_command == "plan":
            _print_removals(stub.Plan(gc_pb2.PlanRequest(), metadata=metadata(args), timeout=TIMEOUT), "would go")
        elif args.gc_command == "collect":
            _print_removals(stub.Collect(gc_pb2.CollectRequest(), metadata=metadata(args), timeout=TIMEOUT), "deleted")
        else:
            reply = stub.Why(gc_pb2.WhyRequest(kind=args.kind, id=args.id), metadata=metadata(args), timeout=TIMEOUT)
            if not reply.reachable:
                print(f"{args.kind} {args.id} is not kept by anything: the next collection removes it")
                return 1
            for depth, line in enumerate(reply.chain):
                print(f"{'  ' * depth}{'<- ' if depth else ''}{line}")
    return 0
