"""What every pyctr command shares: running an async command, output (tables or JSON), labels.

A command is ``async def cmd(args, client) -> int | None``; :func:`command` turns it into the
``run`` callable argparse dispatches to. Listings and inspections go through :func:`show`, so
``--format json`` (global, or after the subcommand) works the same everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pycontainerd.client.transfer import Client
from pycontainerd.core.containers import AnyValue

AsyncCommand = Callable[[argparse.Namespace, Client], Awaitable[int | None]]

SPEC_TYPE_URLS = (
    "types.containerd.io/opencontainers/runtime-spec/1/Spec",
    "types.containerd.io/opencontainers/runtime-spec/1/Process",
)


class UsageError(Exception):
    """A mistake on the command line that argparse could not catch; exits 2 with the message."""


def command(fn: AsyncCommand) -> Callable[[argparse.Namespace], int]:
    """``fn`` run on a fresh client of the global ``--address``/``--namespace``."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> int | None:
            async with Client(args.address, args.namespace, timeout=args.timeout or None) as client:
                return await fn(args, client)

        return int(asyncio.run(main()) or 0)

    return run


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text keeps the line breaks of descriptions and examples."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    *,
    aliases: Sequence[str] = (),
    examples: Sequence[str] = (),
    details: str = "",
    listing: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand whose help says what it does (``summary``, ``details``) and shows ``examples``.

    ``listing``: it takes ``--format table|json`` (as the global option does) and ``-q``."""
    epilog = ""
    if examples:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else "")
    parser = sub.add_parser(
        name,
        aliases=list(aliases),
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=formatter,
    )
    if listing:
        add_format_flag(parser)
    return parser


def add_format_flag(parser: argparse.ArgumentParser) -> None:
    """``--format`` after the subcommand; absent, the global ``--format`` applies."""
    parser.add_argument(
        "--format",
        choices=["table", "json"],
        default=argparse.SUPPRESS,
        help="output as an aligned table (default) or as JSON",
    )


def group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    *,
    aliases: Sequence[str] = (),
    details: str = "",
    setup: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command group (``images``, ``tasks``...) and the action its subcommands register on;
    ``setup`` adds the group's own options (``snapshots --snapshotter``)."""
    parser = sub.add_parser(
        name,
        aliases=list(aliases),
        help=summary,
        description=summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else ""),
        formatter_class=formatter,
    )
    if setup is not None:
        setup(parser)
    return parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)


# -- output ------------------------------------------------------------------------------


def wants_json(args: argparse.Namespace) -> bool:
    """Whether ``--format json`` was given (globally or on the subcommand)."""
    return getattr(args, "format", "table") == "json"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, gap: int = 3) -> str:
    """Rows aligned in columns as Go's tabwriter does it for ctr (the last column unpadded)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.ljust(widths[i] + gap) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("".join(parts).rstrip())
    return "\n".join(lines)


def show(
    args: argparse.Namespace,
    records: Sequence[Any],
    headers: Sequence[str],
    row: Callable[[Any], Sequence[object]],
    *,
    quiet: Callable[[Any], str] | None = None,
) -> None:
    """Print ``records``: JSON with ``--format json``, one name per line with ``-q``, else a table."""
    if wants_json(args):
        print_json(list(records))
    elif quiet is not None and getattr(args, "quiet", False):
        for record in records:
            print(quiet(record))
    else:
        print(table(headers, [row(r) for r in records]))


def print_json(value: Any) -> None:
    """``value`` (dataclasses, enums, bytes, nanosecond times included) as indented JSON."""
    json.dump(jsonable(value), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def jsonable(value: Any, key: str = "") -> Any:
    """Plain JSON values for ``value``: times (``*_at`` keys in ns) become RFC 3339 strings,
    an OCI spec is decoded, other opaque Any values keep their type URL and base64 bytes."""
    if isinstance(value, AnyValue):
        if value.type_url in SPEC_TYPE_URLS:
            try:
                return {"type_url": value.type_url, "value": json.loads(value.value)}
            except ValueError:
                pass
        return {"type_url": value.type_url, "value": base64.b64encode(value.value).decode()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_at"):
        return rfc3339(value)
    return value


def rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch as ``2024-05-01T12:00:00.123456Z`` ("" for zero)."""
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z")


def age(ns: int) -> str:
    """How long ago ``ns`` was, in words ("3 minutes")."""
    if not ns:
        return "-"
    seconds = max(0, int(dt.datetime.now(dt.UTC).timestamp() - ns / 1e9))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def labels_text(labels: Mapping[str, str]) -> str:
    """Labels as ``k=v,k2=v2`` (``-`` when none), sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict (``KEY`` alone or ``KEY=``: an empty value)."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def label_update(current: Mapping[str, str], items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The labels after ``KEY=VALUE`` changes (an empty value removes the key) and their field paths."""
    changes = parse_labels(items)
    labels = {**current, **changes}
    for key, value in changes.items():
        if not value:
            labels.pop(key, None)
    return labels, [f"labels.{key}" for key in changes]
