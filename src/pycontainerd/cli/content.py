"""``pyctr content``: list, read, write, label and delete blobs in the content store."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import add_command, age, command, group, label_update, labels_text, rfc3339, show
from pycontainerd.cli._client import human_size
from pycontainerd.core.content import Info

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator

    from pycontainerd.client.transfer import Client

CHUNK = 1 << 20


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``content`` and its subcommands."""
    content = group(
        sub,
        "content",
        "manage content (blobs by digest)",
        details="The content store holds every blob of every image: indexes, manifests, configs, layers.",
    )
    p = add_command(
        content,
        "ls",
        "list blobs",
        aliases=["list"],
        listing=True,
        examples=["pyctr content ls", "pyctr content ls -q"],
    )
    p.add_argument("filters", nargs="*", help='containerd filters, e.g. labels."containerd.io/gc.root"')
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digests")
    p.set_defaults(run=command(_ls))

    p = add_command(
        content,
        "get",
        "write blobs to standard output",
        examples=["pyctr content get sha256:4d3c... | jq ."],
    )
    p.add_argument("digests", nargs="+", metavar="DIGEST")
    p.set_defaults(run=command(_get))

    p = add_command(
        content,
        "ingest",
        "write standard input into the store under REF; prints the digest",
        examples=[
            "echo hello | pyctr content ingest my-ref",
            "pyctr content ingest --expected-digest sha256:... r < blob",
        ],
        details="An interrupted ingest of the same REF resumes where it stopped.",
    )
    p.add_argument("ref", help="the ingest's name, to resume it")
    p.add_argument("--expected-size", type=int, default=0, help="refuse to commit another size")
    p.add_argument("--expected-digest", default="", help="refuse to commit another digest")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="label the blob (repeatable)")
    p.set_defaults(run=command(_ingest))

    p = add_command(
        content,
        "active",
        "list ingests in progress",
        listing=True,
        examples=["pyctr content active"],
    )
    p.add_argument("filters", nargs="*")
    p.set_defaults(run=command(_active))

    p = add_command(
        content,
        "rm",
        "delete blobs",
        aliases=["remove", "delete", "del"],
        examples=["pyctr content rm sha256:4d3c..."],
        details="Deleted digests are printed; a blob an image still needs is refetched or lost.",
    )
    p.add_argument("digests", nargs="+", metavar="DIGEST")
    p.set_defaults(run=command(_rm))

    p = add_command(
        content,
        "label",
        "set and clear labels of a blob",
        examples=["pyctr content label sha256:4d3c... containerd.io/gc.root=keep"],
    )
    p.add_argument("digest")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="an empty VALUE removes the label")
    p.set_defaults(run=command(_label))

    p = add_command(
        content,
        "fetch",
        "fetch an image's content from a registry without unpacking it",
        examples=["pyctr content fetch --plain-http 127.0.0.1:5000/busybox:1"],
    )
    p.add_argument("ref", help="image reference")
    p.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry")
    p.add_argument("--hosts-dir", default="", help="directory of <host>/hosts.toml files")
    p.add_argument("--platform", action="append", default=[], help="platform(s) to fetch (default: this host)")
    p.set_defaults(run=command(_fetch))


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.content.list(args.filters)
    show(
        args,
        found,
        ["DIGEST", "SIZE", "AGE", "LABELS"],
        lambda i: [i.digest, human_size(i.size), age(i.created_at), labels_text(i.labels)],
        quiet=lambda i: i.digest,
    )


async def _get(args: argparse.Namespace, client: Client) -> None:
    out = sys.stdout.buffer
    for digest in args.digests:
        async for chunk in client.content.read_chunks(digest):
            out.write(chunk)
    out.flush()


async def _stdin_chunks() -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(sys.stdin.buffer.read, CHUNK):
        yield chunk


async def _ingest(args: argparse.Namespace, client: Client) -> None:
    labels = dict(item.partition("=")[::2] for item in args.label)
    digest = await client.content.write(
        args.ref, _stdin_chunks(), expected=args.expected_digest, total=args.expected_size, labels=labels
    )
    print(digest)


async def _active(args: argparse.Namespace, client: Client) -> None:
    found = await client.content.statuses(args.filters)
    show(
        args,
        found,
        ["REF", "SIZE", "STARTED", "UPDATED"],
        lambda s: [
            s.ref,
            f"{human_size(s.offset)}/{human_size(s.total) if s.total else '?'}",
            rfc3339(s.started_at),
            rfc3339(s.updated_at),
        ],
        quiet=lambda s: s.ref,
    )


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    for digest in args.digests:
        try:
            await client.content.delete(digest)
            print(digest)
        except Exception as exc:
            print(f"pyctr: unable to delete {digest}: {exc}", file=sys.stderr)
            failed = 1
    return failed


async def _label(args: argparse.Namespace, client: Client) -> None:
    info = await client.content.info(args.digest)
    labels, paths = label_update(info.labels, args.labels)
    if paths:
        info = await client.content.update(Info(info.digest, info.size, labels=labels), paths)
    print(labels_text(info.labels))


async def _fetch(args: argparse.Namespace, client: Client) -> None:
    from pycontainerd.cli.progress import ProgressDisplay
    from pycontainerd.images import platforms

    await client.pull(
        args.ref,
        platforms=[platforms.parse(p) for p in args.platform] or [platforms.host_platform()],
        unpack=False,
        plain_http=args.plain_http,
        hosts_dir=args.hosts_dir,
        progress=ProgressDisplay(),
    )
    print(f"{args.ref}: fetched")
