"""``pyctr plugins``: the daemon's plugins and whether they loaded (Introspection API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pycontainerd.cli._app import add_command, command, group, show, wants_json

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.introspection import Plugin
    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``plugins ls``."""
    plugins = group(sub, "plugins", "show the daemon's plugins", aliases=["plugin"])
    p = add_command(
        plugins,
        "ls",
        "list plugins with their status",
        aliases=["list"],
        listing=True,
        examples=["pyctr plugins ls", "pyctr plugins ls -d type==io.containerd.snapshotter.v1"],
        details="STATUS is ok, or error for a plugin that did not load (-d shows why).",
    )
    p.add_argument("filters", nargs="*", help="containerd filters, e.g. type==io.containerd.snapshotter.v1")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the plugin IDs")
    p.add_argument("-d", "--detailed", action="store_true", help="everything about each plugin")
    p.set_defaults(run=command(_ls))


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.introspection.plugins(args.filters)
    if args.detailed and not wants_json(args):
        _detailed(found)
        return
    show(
        args,
        found,
        ["TYPE", "ID", "PLATFORMS", "STATUS"],
        lambda p: [p.type, p.id, ",".join(p.platforms) or "-", p.status],
        quiet=lambda p: p.id,
    )


def _detailed(found: list[Plugin]) -> None:
    for p in found:
        print(f"Type:          {p.type}")
        print(f"ID:            {p.id}")
        if p.requires:
            print("Requires:")
            for r in p.requires:
                print(f"               {r}")
        if p.platforms:
            print("Platforms:     " + ", ".join(p.platforms))
        if p.exports:
            print("Exports:")
            for k, v in sorted(p.exports.items()):
                print(f"               {k:<20} {v}")
        if p.capabilities:
            print("Capabilities:  " + ", ".join(p.capabilities))
        if p.init_error:
            print(f"Error:         {p.init_error}")
        print()
