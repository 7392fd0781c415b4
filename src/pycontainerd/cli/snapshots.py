"""``pyctr snapshots``: list, inspect, create, commit, mount and remove snapshots."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import (
    add_command,
    command,
    group,
    label_update,
    labels_text,
    print_json,
    show,
    wants_json,
)
from pycontainerd.cli._client import human_size
from pycontainerd.core.snapshots import Info

if TYPE_CHECKING:
    from pycontainerd.client.snapshots import Snapshots
    from pycontainerd.client.transfer import Client
    from pycontainerd.core.snapshots import Mount

SNAPSHOTTER_ENV = "CONTAINERD_SNAPSHOTTER"


def snapshotter_flag(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``--snapshotter`` (default ``$CONTAINERD_SNAPSHOTTER``, else the daemon's overlayfs)."""
    parser.add_argument(
        "--snapshotter",
        default=argparse.SUPPRESS if suppress else os.environ.get(SNAPSHOTTER_ENV, ""),
        help="snapshotter name (default $CONTAINERD_SNAPSHOTTER or overlayfs)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``snapshots`` and its subcommands."""
    snaps = group(
        sub,
        "snapshots",
        "manage snapshots (layered filesystems)",
        aliases=["snapshot"],
        details="Committed snapshots are image layers (named by chain ID); active ones are writable\n"
        "container roots; views are read-only. --snapshotter picks the snapshotter.",
        setup=snapshotter_flag,
    )
    p = add_command(snaps, "ls", "list snapshots", aliases=["list"], listing=True, examples=["pyctr snapshots ls"])
    p.add_argument("filters", nargs="*", help="containerd filters, e.g. kind==committed")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the keys")
    p.set_defaults(run=command(_ls))

    p = add_command(snaps, "info", "show one snapshot as JSON", examples=["pyctr snapshots info my-key"])
    p.add_argument("key")
    p.set_defaults(run=command(_info))

    p = add_command(
        snaps, "rm", "remove snapshots", aliases=["remove", "delete", "del"], examples=["pyctr snapshots rm my-key"]
    )
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(run=command(_rm))

    for name, summary, example in (
        ("prepare", "create an active (writable) snapshot on PARENT", "pyctr snapshots prepare work sha256:<chainid>"),
        ("view", "create a read-only view of PARENT", "pyctr snapshots view look sha256:<chainid>"),
    ):
        p = add_command(snaps, name, summary, examples=[example, f"pyctr snapshots {name} --mounts k <parent>"])
        p.add_argument("key")
        p.add_argument("parent", nargs="?", default="", help="committed snapshot to start from (default: empty)")
        p.add_argument("-t", "--target", default="", help="print the mount commands for this target path")
        p.add_argument("--mounts", action="store_true", help="print the mounts as JSON")
        p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="label the snapshot")
        snapshotter_flag(p, suppress=True)
        p.set_defaults(run=command(_create), view=name == "view")

    p = add_command(
        snaps, "commit", "commit the active snapshot ACTIVE as NAME", examples=["pyctr snapshots commit layer1 work"]
    )
    p.add_argument("name")
    p.add_argument("active")
    p.set_defaults(run=command(_commit))

    p = add_command(
        snaps,
        "mounts",
        "print the mount commands that mount KEY at TARGET",
        aliases=["m", "mount"],
        listing=True,
        examples=["pyctr snapshots mounts /mnt work | sh"],
    )
    p.add_argument("target")
    p.add_argument("key")
    p.set_defaults(run=command(_mounts))

    p = add_command(
        snaps,
        "usage",
        "show the disk usage of snapshots (all, or the KEYs given)",
        listing=True,
        examples=["pyctr snapshots usage", "pyctr snapshots usage -b work"],
    )
    p.add_argument("keys", nargs="*", metavar="KEY")
    p.add_argument("-b", action="store_true", dest="bytes", help="sizes in bytes")
    p.set_defaults(run=command(_usage))

    p = add_command(
        snaps, "tree", "show snapshots as a tree of parents and children", examples=["pyctr snapshots tree"]
    )
    p.set_defaults(run=command(_tree))

    p = add_command(
        snaps, "label", "set and clear labels of a snapshot", examples=["pyctr snapshots label work owner=me"]
    )
    p.add_argument("key")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="an empty VALUE removes the label")
    p.set_defaults(run=command(_label))


def _snapshots(args: argparse.Namespace, client: Client) -> Snapshots:
    return client.snapshots(args.snapshotter)


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await _snapshots(args, client).list(args.filters)
    show(
        args,
        found,
        ["KEY", "PARENT", "KIND"],
        lambda i: [i.name, i.parent, i.kind.name.capitalize()],
        quiet=lambda i: i.name,
    )


async def _info(args: argparse.Namespace, client: Client) -> None:
    print_json(await _snapshots(args, client).stat(args.key))


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    snaps = _snapshots(args, client)
    for key in args.keys:
        try:
            await snaps.remove(key)
        except Exception as exc:
            print(f"pyctr: unable to remove snapshot {key}: {exc}", file=sys.stderr)
            failed = 1
    return failed


def mount_commands(target: str, mounts: list[Mount]) -> list[str]:
    """``mount`` command lines for ``mounts`` at ``target`` (as ctr prints them)."""
    lines = []
    for m in mounts:
        options = f" -o {','.join(m.options)}" if m.options else ""
        lines.append(f"mount -t {m.type} {m.source} {target.rstrip('/') or '/'}{options}")
    return lines


async def _create(args: argparse.Namespace, client: Client) -> None:
    snaps = _snapshots(args, client)
    labels = dict(item.partition("=")[::2] for item in args.label)
    make = snaps.view if args.view else snaps.prepare
    mounts = await make(args.key, args.parent, labels)
    if args.target:
        print("\n".join(mount_commands(args.target, mounts)))
    if args.mounts:
        print_json(mounts)


async def _commit(args: argparse.Namespace, client: Client) -> None:
    await _snapshots(args, client).commit(args.name, args.active)


async def _mounts(args: argparse.Namespace, client: Client) -> None:
    mounts = await _snapshots(args, client).mounts(args.key)
    if wants_json(args):
        print_json(mounts)
    else:
        print("\n".join(mount_commands(args.target, mounts)))


async def _usage(args: argparse.Namespace, client: Client) -> None:
    snaps = _snapshots(args, client)
    keys = args.keys or [i.name for i in await snaps.list()]
    records = [{"key": key, "size": u.size, "inodes": u.inodes} for key in keys for u in [await snaps.usage(key)]]
    show(
        args,
        records,
        ["KEY", "SIZE", "INODES"],
        lambda r: [r["key"], r["size"] if args.bytes else human_size(r["size"]), r["inodes"]],
    )


async def _tree(args: argparse.Namespace, client: Client) -> None:
    found = await _snapshots(args, client).list()
    children: dict[str, list[str]] = {}
    names = {i.name for i in found}
    for info in sorted(found, key=lambda i: i.name):
        children.setdefault(info.parent if info.parent in names else "", []).append(info.name)

    def walk(name: str, depth: int) -> None:
        print(f"{'  ' * depth}\\_ {name}" if depth else name)
        for child in children.get(name, []):
            walk(child, depth + 1)

    for root in children.get("", []):
        walk(root, 0)


async def _label(args: argparse.Namespace, client: Client) -> None:
    snaps = _snapshots(args, client)
    info = await snaps.stat(args.key)
    labels, paths = label_update(info.labels, args.labels)
    if paths:
        info = await snaps.update(Info(info.name, info.kind, info.parent, labels), paths)
    print(labels_text(info.labels))
