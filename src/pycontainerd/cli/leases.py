"""``pyctr leases``: create, list and delete leases (what holds content and snapshots against GC)."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import UsageError, add_command, command, group, labels_text, parse_labels, rfc3339, show
from pycontainerd.client.leases import expiry_label

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """A Go-style duration (``24h``, ``1h30m``, ``90s``; ``0`` for none) in seconds."""
    if text in ("0", ""):
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r} (examples: 24h, 1h30m, 90s)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``leases`` and its subcommands."""
    leases = group(
        sub,
        "leases",
        "manage leases",
        aliases=["lease"],
        details="A lease keeps the content and snapshots created under it from garbage collection\n"
        "until it is deleted or expires.",
    )
    p = add_command(leases, "ls", "list leases", aliases=["list"], listing=True, examples=["pyctr leases ls"])
    p.add_argument("filters", nargs="*", help="containerd filters, e.g. id==my-lease")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the IDs")
    p.set_defaults(run=command(_ls))

    p = add_command(
        leases,
        "create",
        "create a lease; prints its ID",
        examples=["pyctr leases create --id build-1 --expires 2h purpose=build"],
    )
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--id", default="", help="the lease ID (default: generated)")
    p.add_argument("-x", "--expires", default="24h", help="expire after this long (Go duration; 0: never; default 24h)")
    p.set_defaults(run=command(_create))

    p = add_command(
        leases, "rm", "delete leases", aliases=["remove", "delete", "del"], examples=["pyctr leases rm build-1"]
    )
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--sync", action="store_true", help="wait until what only they held is collected")
    p.set_defaults(run=command(_rm))


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.leases.list(args.filters)
    show(
        args,
        found,
        ["ID", "CREATED AT", "LABELS"],
        lambda lease: [lease.id, rfc3339(lease.created_at), labels_text(lease.labels)],
        quiet=lambda lease: lease.id,
    )


async def _create(args: argparse.Namespace, client: Client) -> None:
    labels = parse_labels(args.labels)
    seconds = parse_duration(args.expires)
    if seconds > 0:
        labels.update(expiry_label(seconds))
    lease = await client.leases.create(args.id, labels)
    print(lease.id)


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    for lease_id in args.ids:
        try:
            await client.leases.delete(lease_id, sync=args.sync)
            print(lease_id)
        except Exception as exc:
            print(f"pyctr: unable to delete lease {lease_id}: {exc}", file=sys.stderr)
            failed = 1
    return failed
