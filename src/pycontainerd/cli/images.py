"""``pyctr images``: pull, push, import, export and tag through the Transfer service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import sys
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.types.transfer import imagestore_pb2, importexport_pb2
from pycontainerd.cli import images_manage
from pycontainerd.cli._app import add_command, group
from pycontainerd.cli.progress import ProgressDisplay
from pycontainerd.client.transfer import Client, Credentials, platform_to_pb
from pycontainerd.images import platforms

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``images`` and its subcommands."""
    isub = group(
        sub,
        "images",
        "manage images (pull, push, import and export go through the Transfer API)",
        aliases=["image", "i"],
    )
    pull = add_command(
        isub,
        "pull",
        "pull an image from a registry and unpack it",
        examples=[
            "pyctr images pull --plain-http 127.0.0.1:5000/busybox:1",
            "pyctr images pull --platform linux/arm64 --no-unpack registry.example/app:2",
        ],
        details="The daemon fetches and unpacks; progress bars show each blob.",
    )
    pull.add_argument("ref", help="image reference, e.g. 127.0.0.1:5000/busybox:latest")
    _registry_flags(pull)
    pull.add_argument("--snapshotter", default="", help="snapshotter to unpack into (default: the daemon's)")
    pull.add_argument("--no-unpack", action="store_true", help="fetch the content only")
    pull.add_argument("--platform", action="append", default=[], help="platform(s) to pull (default: this host)")
    pull.set_defaults(run=_pull)

    push = add_command(
        isub,
        "push",
        "push a local image to a registry",
        examples=["pyctr images push --plain-http 127.0.0.1:5000/copy:1 docker.io/library/busybox:latest"],
    )
    push.add_argument("ref", help="remote reference to push to")
    push.add_argument("local", nargs="?", default="", help="local image name (default: the remote reference)")
    _registry_flags(push)
    push.add_argument("--platform", action="append", default=[], help="push only these platforms")
    push.set_defaults(run=_push)

    mirror = add_command(
        isub,
        "mirror",
        "copy an image from one registry to another (all platforms)",
        examples=["pyctr images mirror --plain-http 127.0.0.1:5000/a:1 127.0.0.1:5000/b:1"],
    )
    mirror.add_argument("source", help="reference to copy from")
    mirror.add_argument("destination", help="reference to copy to")
    _registry_flags(mirror)
    mirror.set_defaults(run=_mirror)

    imp = add_command(
        isub,
        "import",
        "import an OCI or docker archive (unpacked for this host)",
        examples=["pyctr images import busybox.tar", "docker save app:1 | pyctr images import -"],
    )
    imp.add_argument("file", help="archive path, or - for standard input")
    imp.add_argument("--base-name", default="", help="name prefix for images whose archive names are bare tags")
    imp.add_argument("--index-name", default="", help="also name the archive's whole index")
    imp.add_argument("--no-unpack", action="store_true", help="do not unpack into a snapshotter")
    imp.add_argument("--snapshotter", default="", help="snapshotter to unpack into")
    imp.add_argument("--platform", default="", help="platform to import and unpack (default: this host)")
    imp.add_argument("--all-platforms", action="store_true", help="import every platform in the archive")
    imp.set_defaults(run=_import)

    exp = add_command(
        isub,
        "export",
        "export images as an OCI archive that docker load also reads",
        examples=["pyctr images export out.tar docker.io/library/busybox:latest"],
    )
    exp.add_argument("file", help="output path, or - for standard output")
    exp.add_argument("names", nargs="+", help="images to export")
    exp.add_argument("--platform", action="append", default=[], help="only these platforms")
    exp.add_argument("--all-platforms", action="store_true", help="every platform the store holds")
    exp.set_defaults(run=_export)

    tag = add_command(
        isub, "tag", "give an image more names", examples=["pyctr images tag docker.io/library/busybox:latest my:1"]
    )
    tag.add_argument("source")
    tag.add_argument("targets", nargs="+")
    tag.set_defaults(run=_tag)
    images_manage.add_parsers(isub)


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry")
    p.add_argument("--hosts-dir", default="", help="directory of <host>/hosts.toml files (containerd's format)")
    p.add_argument("-u", "--user", default="", help="USER[:PASSWORD] for the registry (asked for when absent)")


def _credentials(args: argparse.Namespace) -> Credentials:
    """--user, else the logins in docker's config.json (``$DOCKER_CONFIG``, ~/.docker), as docker does."""
    if not args.user:
        return _docker_login
    user, sep, password = args.user.partition(":")
    if not sep:
        password = getpass.getpass(f"Password for {user}: ")
    return user, password


async def _docker_login(host: str) -> tuple[str, str] | None:
    # Imported here: the registry client pulls in aiohttp, a quarter second every pyctr call would pay.
    from pycontainerd.remotes.credentials import load_docker_config

    found = await load_docker_config().credentials(host)
    if found is None or found.empty:
        return None
    if found.identity_token:
        return "", found.identity_token
    return found.username, found.password


def _run(args: argparse.Namespace, work: Callable[[Client], Awaitable[None]]) -> int:
    async def main() -> None:
        client = Client(args.address, args.namespace, timeout=args.timeout or None)
        try:
            await work(client)
        finally:
            await client.close()

    asyncio.run(main())
    return 0


def _platforms(values: list[str]) -> list[platforms.Platform]:
    return [platforms.parse(v) for v in values] or [platforms.host_platform()]


def _pull(args: argparse.Namespace) -> int:
    display = ProgressDisplay()

    async def work(client: Client) -> None:
        await client.pull(
            args.ref,
            platforms=_platforms(args.platform),
            snapshotter=args.snapshotter,
            unpack=not args.no_unpack,
            plain_http=args.plain_http,
            hosts_dir=args.hosts_dir,
            credentials=_credentials(args),
            progress=display,
        )

    code = _run(args, work)
    print(f"{args.ref}: pulled")
    return code


def _push(args: argparse.Namespace) -> int:
    display = ProgressDisplay()

    async def work(client: Client) -> None:
        await client.push(
            args.ref,
            args.local,
            platforms=[platforms.parse(v) for v in args.platform],
            plain_http=args.plain_http,
            hosts_dir=args.hosts_dir,
            credentials=_credentials(args),
            progress=display,
        )

    code = _run(args, work)
    print(f"{args.ref}: pushed")
    return code


def _mirror(args: argparse.Namespace) -> int:
    display = ProgressDisplay()
    code = _run(
        args,
        lambda client: client.mirror(
            args.source, args.destination, plain_http=args.plain_http, hosts_dir=args.hosts_dir, progress=display
        ),
    )
    print(f"{args.destination}: mirrored from {args.source}")
    return code


def _import(args: argparse.Namespace) -> int:
    prefix = args.base_name or f"import-{dt.date.today().isoformat()}"
    store = imagestore_pb2.ImageStore(
        name=args.index_name,
        extra_references=[
            imagestore_pb2.ImageReference(name=prefix, is_prefix=True, allow_overwrite=not args.base_name)
        ],
    )
    unpack_platform = platforms.parse(args.platform) if args.platform else platforms.host_platform()
    if not args.all_platforms:
        store.platforms.append(platform_to_pb(unpack_platform))
    if not args.no_unpack:
        store.unpacks.add(platform=platform_to_pb(unpack_platform), snapshotter=args.snapshotter)
    display = ProgressDisplay()
    with contextlib.ExitStack() as stack:
        source = sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
        return _run(args, lambda client: client.import_archive(source, store, display))


def _export(args: argparse.Namespace) -> int:
    store = imagestore_pb2.ImageStore(
        name=args.names[0], extra_references=[imagestore_pb2.ImageReference(name=n) for n in args.names[1:]]
    )
    export = importexport_pb2.ImageExportStream(
        platforms=[platform_to_pb(p) for p in _platforms(args.platform)] if not args.all_platforms else [],
        all_platforms=args.all_platforms,
    )

    with contextlib.ExitStack() as stack:
        out = sys.stdout.buffer if args.file == "-" else stack.enter_context(open(args.file, "wb"))
        return _run(args, lambda client: client.export_archive(out, store, export))


def _tag(args: argparse.Namespace) -> int:
    code = _run(args, lambda client: client.tag(args.source, *args.targets))
    for target in args.targets:
        print(target)
    return code
