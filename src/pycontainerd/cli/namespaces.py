"""``pyctr namespaces``: create, list, label and remove namespaces."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import add_command, command, group, label_update, labels_text, parse_labels, show
from pycontainerd.client.namespaces import Namespace

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``namespaces`` and its subcommands."""
    ns = group(
        sub,
        "namespaces",
        "manage namespaces",
        aliases=["namespace", "ns"],
        details="Every object (image, container, content, snapshot, lease) lives in one namespace;\n"
        "pick it with the global -n (or $CONTAINERD_NAMESPACE).",
    )
    p = add_command(ns, "create", "create a namespace", aliases=["c"], examples=["pyctr ns create team-a owner=me"])
    p.add_argument("name", help="namespace name")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="labels to set")
    p.set_defaults(run=command(_create))

    p = add_command(ns, "ls", "list namespaces", aliases=["list"], listing=True, examples=["pyctr ns ls -q"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the names")
    p.set_defaults(run=command(_ls))

    p = add_command(
        ns,
        "rm",
        "remove empty namespaces",
        aliases=["remove", "delete", "del"],
        examples=["pyctr ns rm team-a"],
        details="A namespace that still holds anything is refused (remove its objects first).",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(run=command(_rm))

    p = add_command(
        ns,
        "label",
        "set and clear labels of a namespace",
        examples=["pyctr ns label team-a owner=you", "pyctr ns label team-a owner=   # clears owner"],
    )
    p.add_argument("name")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="an empty VALUE removes the label")
    p.set_defaults(run=command(_label))


async def _create(args: argparse.Namespace, client: Client) -> None:
    await client.namespaces.create(args.name, parse_labels(args.labels))


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.namespaces.list()
    show(args, found, ["NAME", "LABELS"], lambda n: [n.name, labels_text(n.labels)], quiet=lambda n: n.name)


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    for name in args.names:
        try:
            await client.namespaces.delete(name)
            print(name)
        except Exception as exc:
            print(f"pyctr: unable to delete namespace {name}: {exc}", file=sys.stderr)
            failed = 1
    return failed


async def _label(args: argparse.Namespace, client: Client) -> None:
    current = await client.namespaces.get(args.name)
    labels, paths = label_update(current.labels, args.labels)
    if paths:
        current = await client.namespaces.update(Namespace(args.name, labels), paths)
    print(labels_text(current.labels))
