"""``pyctr``: the command-line client.

A ctr-like subset that grows with each service, plus commands containerd does not have
(``pyctr gc plan`` / ``gc why``).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from google.protobuf import empty_pb2

from pycontainerd import version
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc
from pycontainerd.cli import gc, images, sandboxes
from pycontainerd.cli._client import TIMEOUT, channel, metadata
from pycontainerd.config.model import DEFAULT_ADDRESS
from pycontainerd.namespaces import default_namespace


def _version(args: argparse.Namespace) -> int:
    print(f"Client:\n  Version:  {version.VERSION}\n")
    with channel(args.address) as ch:
        reply = version_pb2_grpc.VersionStub(ch).Version(empty_pb2.Empty(), metadata=metadata(args), timeout=TIMEOUT)
    print(f"Server:\n  Version:  {reply.version}\n  Revision: {reply.revision}")
    return 0


def _namespaces(args: argparse.Namespace) -> int:
    with channel(args.address) as ch:
        listing = namespace_pb2_grpc.NamespacesStub(ch).List(
            namespace_pb2.ListNamespacesRequest(), metadata=metadata(args), timeout=TIMEOUT
        )
    print(f"{'NAME':<20} LABELS")
    for item in listing.namespaces:
        labels = ",".join(f"{k}={v}" for k, v in sorted(item.labels.items()))
        print(f"{item.name:<20} {labels}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="pyctr",
        description="Talk to pycontainerd (or containerd, for containerd's own APIs) over its socket.",
    )
    parser.add_argument("-a", "--address", default=DEFAULT_ADDRESS, help=f"daemon socket (default {DEFAULT_ADDRESS})")
    parser.add_argument(
        "-n",
        "--namespace",
        default=default_namespace(),
        help="namespace (default $CONTAINERD_NAMESPACE or 'default')",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("version", help="print client and server versions").set_defaults(run=_version)
    ns = sub.add_parser("namespaces", aliases=["ns"], help="list namespaces")
    ns.add_argument("action", choices=["ls", "list"])
    ns.set_defaults(run=_namespaces)
    gc.add_parser(sub)
    images.add_parser(sub)
    sandboxes.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pyctr``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except grpc.RpcError as exc:
        print(f"pyctr: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
