"""``pyctr``: the command-line client (a ctr-like subset grows with each service)."""

from __future__ import annotations

import argparse
import sys

import grpc
from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc
from pycontainerd.config.model import DEFAULT_ADDRESS
from pycontainerd.namespaces import GRPC_NAMESPACE_HEADER, default_namespace

MAX_MESSAGE = 16 << 20


def _channel(address: str) -> grpc.Channel:
    target = address if address.startswith("unix:") else f"unix:{address}"
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="pyctr", description="Talk to pycontainerd (or containerd) over its socket."
    )
    parser.add_argument(
        "-a", "--address", default=DEFAULT_ADDRESS, help=f"daemon socket (default {DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=default_namespace(),
        help="namespace (default $CONTAINERD_NAMESPACE or 'default')",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("version", help="print client and server versions")
    ns = sub.add_parser("namespaces", aliases=["ns"], help="list namespaces")
    ns.add_argument("action", choices=["ls", "list"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pyctr``."""
    args = build_parser().parse_args(argv)
    metadata = ((GRPC_NAMESPACE_HEADER, args.namespace),)
    try:
        with _channel(args.address) as channel:
            if args.command == "version":
                from pycontainerd import version

                print(f"Client:\n  Version:  {version.VERSION}\n")
                reply = version_pb2_grpc.VersionStub(channel).Version(
                    empty_pb2.Empty(), metadata=metadata, timeout=10
                )
                print(f"Server:\n  Version:  {reply.version}\n  Revision: {reply.revision}")
            else:
                listing = namespace_pb2_grpc.NamespacesStub(channel).List(
                    namespace_pb2.ListNamespacesRequest(), metadata=metadata, timeout=10
                )
                print(f"{'NAME':<20} LABELS")
                for item in listing.namespaces:
                    labels = ",".join(f"{k}={v}" for k, v in sorted(item.labels.items()))
                    print(f"{item.name:<20} {labels}")
    except grpc.RpcError as exc:
        print(f"pyctr: {exc.details()}", file=sys.stderr)
        return 1
    return 0
