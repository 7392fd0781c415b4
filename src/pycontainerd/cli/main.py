"""``pyctr``: the command-line client, shaped like containerd's ``ctr``.

One module per noun (images, containers, tasks, snapshots, content, leases, namespaces,
plugins, events, sandboxes), plus ``run``, ``version``, ``completion`` and ``gc`` (ours: what a
collection would remove and why something is kept). Listings print aligned tables, or JSON
with ``--format json``; errors print ``pyctr: <message>`` and exit 1 (2 for usage mistakes).
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from pycontainerd import version
from pycontainerd.cli import (
    completion,
    containers,
    content,
    events,
    gc,
    images,
    leases,
    namespaces,
    plugins,
    run,
    sandboxes,
    snapshots,
    tasks,
)
from pycontainerd.cli import version as version_cmd
from pycontainerd.cli._app import UsageError, formatter
from pycontainerd.config.model import DEFAULT_ADDRESS
from pycontainerd.errdefs import ContainerdError
from pycontainerd.namespaces import default_namespace

ADDRESS_ENV = "CONTAINERD_ADDRESS"

DESCRIPTION = """\
Talk to pycontainerd (or to containerd, whose API it serves) over its socket.

Start here:
  pyctr images import busybox.tar          # or: pyctr images pull REF
  pyctr images ls
  pyctr run --rm docker.io/library/busybox:latest hello echo hi
  pyctr run -d docker.io/library/busybox:latest web1 sleep 600
  pyctr tasks ls; pyctr tasks exec web1 ps; pyctr tasks kill web1
  pyctr containers ls --format json

`pyctr COMMAND --help` explains each command, with examples."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="pyctr", description=DESCRIPTION, formatter_class=formatter)
    default_address = os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    parser.add_argument(
        "-a", "--address", default=default_address, help=f"daemon socket (default ${ADDRESS_ENV} or {DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "-n", "--namespace", default=default_namespace(), help="namespace (default $CONTAINERD_NAMESPACE or 'default')"
    )
    parser.add_argument(
        "--format", choices=["table", "json"], default="table", help="output of listings: table (default) or json"
    )
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds allowed per API call (default: none)")
    parser.add_argument("-v", "--version", action="version", version=f"pyctr {version.VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        plugins,
        version_cmd,
        containers,
        content,
        events,
        images,
        leases,
        namespaces,
        run,
        snapshots,
        tasks,
    ):
        module.add_parser(sub)
    sandboxes.add_parser(sub)
    gc.add_parser(sub)
    completion.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``pyctr``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        parser.exit(2, f"pyctr: {exc}\n")
    except ContainerdError as exc:
        print(f"pyctr: {exc.message}", file=sys.stderr)
    except grpc.RpcError as exc:  # the commands that still use plain stubs (gc, sandboxes, transfers)
        print(f"pyctr: {exc.details()}", file=sys.stderr)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"pyctr: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
