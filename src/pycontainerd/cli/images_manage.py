"""``pyctr images ls|rm|label|check|mount|unmount``: the image records and what they hold."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.cli._app import add_command, command, label_update, labels_text, show
from pycontainerd.cli._client import human_size
from pycontainerd.cli.snapshots import snapshotter_flag
from pycontainerd.core.images import Image
from pycontainerd.errdefs import NotFound
from pycontainerd.images import platforms
from pycontainerd.images.manifest import chain_ids, descriptor_from_json

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client
    from pycontainerd.core.images import Descriptor

MOUNT_TIMEOUT = 60


def add_parsers(isub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the record-keeping subcommands of ``images``."""
    p = add_command(
        isub,
        "ls",
        "list images",
        aliases=["list"],
        listing=True,
        examples=["pyctr images ls", "pyctr images ls -q", "pyctr images ls 'name~=busybox' --format json"],
        details="SIZE counts the blobs the store holds for the image (every platform it has).",
    )
    p.add_argument("filters", nargs="*", help="containerd filters, e.g. name==docker.io/library/busybox:latest")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the names")
    p.set_defaults(run=command(_ls))

    p = add_command(
        isub,
        "rm",
        "remove image names (the content goes at the next garbage collection)",
        aliases=["remove", "delete", "del"],
        examples=["pyctr images rm docker.io/library/busybox:latest", "pyctr images rm --sync old:1"],
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--sync", action="store_true", help="wait until the content and snapshots are collected")
    p.set_defaults(run=command(_rm))

    p = add_command(
        isub,
        "label",
        "set and clear labels of an image",
        examples=["pyctr images label busybox:1 team=infra", "pyctr images label -r busybox:1 a=b"],
    )
    p.add_argument("name")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="an empty VALUE removes the label")
    p.add_argument("-r", "--replace-all", action="store_true", help="drop every other label")
    p.set_defaults(run=command(_label))

    p = add_command(
        isub,
        "check",
        "check that images are complete (every blob present) and unpacked",
        listing=True,
        examples=["pyctr images check", "pyctr images check -q   # only the ready ones"],
    )
    p.add_argument("filters", nargs="*")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the names of complete, unpacked images")
    snapshotter_flag(p)
    p.set_defaults(run=command(_check))

    p = add_command(
        isub,
        "mount",
        "mount an image's root filesystem at TARGET (read-only unless --rw)",
        examples=["pyctr images mount docker.io/library/busybox:latest /mnt", "pyctr images unmount /mnt"],
        details="A lease named after TARGET holds the mount's snapshot until `images unmount`.",
    )
    p.add_argument("name")
    p.add_argument("target")
    p.add_argument("--rw", action="store_true", help="a writable snapshot (its changes are dropped at unmount)")
    p.add_argument("--platform", default="", help="the platform's manifest (default: this host)")
    snapshotter_flag(p)
    p.set_defaults(run=command(_mount))

    p = add_command(isub, "unmount", "unmount what `images mount` mounted", examples=["pyctr images unmount /mnt"])
    p.add_argument("target")
    p.add_argument("--rm", action="store_true", help="remove the snapshot too (always done: accepted for ctr)")
    snapshotter_flag(p)
    p.set_defaults(run=command(_unmount))


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """An image with what a listing shows about it."""

    name: str
    type: str
    digest: str
    size: int
    platforms: tuple[str, ...]
    labels: dict[str, str]


async def _documents(client: Client, target: Descriptor) -> dict[str, dict[str, object]]:
    """The JSON documents (indexes, manifests) under ``target`` the store holds."""
    docs: dict[str, dict[str, object]] = {}
    todo = [target.digest]
    while todo:
        digest = todo.pop()
        if digest in docs:
            continue
        try:
            doc = json.loads(await client.content.read(digest))
        except (NotFound, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        docs[digest] = doc
        todo.extend(m["digest"] for m in doc.get("manifests") or [] if isinstance(m, dict) and "digest" in m)
    return docs


def _referenced(docs: dict[str, dict[str, object]], target: Descriptor) -> dict[str, int]:
    """Every blob the image refers to, with its size."""
    sizes = {target.digest: target.size}
    for doc in docs.values():
        for key in ("manifests", "layers"):
            for raw in doc.get(key) or []:  # type: ignore[attr-defined]
                sizes[raw["digest"]] = int(raw["size"])
        if isinstance(doc.get("config"), dict):
            config = doc["config"]
            sizes[config["digest"]] = int(config["size"])  # type: ignore[index]
    return sizes


async def summarize(client: Client, image: Image, held: dict[str, int]) -> ImageSummary:
    """Size (blobs held), platforms and type of ``image``; ``held``: digest to size of the store."""
    docs = await _documents(client, image.target)
    sizes = _referenced(docs, image.target)
    size = sum(s for d, s in sizes.items() if d in held)
    found: list[str] = []
    root = docs.get(image.target.digest, {})
    for raw in root.get("manifests") or []:  # type: ignore[attr-defined]
        p = raw.get("platform") or {}
        if p.get("os"):
            found.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
    if not found and isinstance(root.get("config"), dict):
        try:
            config = json.loads(await client.content.read(root["config"]["digest"]))  # type: ignore[index]
            found.append(
                "/".join(x for x in (config.get("os"), config.get("architecture"), config.get("variant")) if x)
            )
        except (NotFound, ValueError):
            pass
    return ImageSummary(
        image.name, image.target.media_type, image.target.digest, size, tuple(sorted(set(found))), image.labels
    )


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.images.list(args.filters)
    held = {i.digest: i.size for i in await client.content.list()} if found and not args.quiet else {}
    summaries = [await summarize(client, image, held) for image in found]
    show(
        args,
        summaries,
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"],
        lambda s: [s.name, s.type, s.digest, human_size(s.size), ",".join(s.platforms) or "-", labels_text(s.labels)],
        quiet=lambda s: s.name,
    )


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    for name in args.names:
        try:
            await client.images.delete(name, sync=args.sync)
            print(name)
        except NotFound:
            print(f"pyctr: image {name} not found", file=sys.stderr)
            failed = 1
    return failed


async def _label(args: argparse.Namespace, client: Client) -> None:
    image = await client.images.get(args.name)
    if args.replace_all:
        labels = {k: v for k, v in (item.partition("=")[::2] for item in args.labels) if v}
        paths = ["labels"]
    else:
        labels, paths = label_update(image.labels, args.labels)
    if paths:
        image = await client.images.update(Image(image.name, image.target, labels), paths)
    print(labels_text(image.labels))


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """Whether an image's blobs are all present and its layers unpacked (for this host)."""

    name: str
    type: str
    digest: str
    status: str
    present: int
    required: int
    size: int
    unpacked: bool


def _platform_text(doc: dict[str, Any]) -> str:
    return "/".join(x for x in (doc.get("os"), doc.get("architecture"), doc.get("variant")) if x)


async def check(client: Client, image: Image, snapshotter: str) -> ImageCheck:
    """The ``images check`` line of ``image`` for this host's platform."""
    docs = await _documents(client, image.target)
    root: dict[str, Any] = docs.get(image.target.digest) or {}
    required: list[Descriptor] = [image.target]
    manifest: dict[str, Any] | None = root if "config" in root else None
    want = platforms.host_platform()
    for raw in root.get("manifests") or []:
        if platforms.matches(want, raw.get("platform")):
            required.append(descriptor_from_json(raw))
            manifest = docs.get(raw["digest"])
            break
    chain = ""
    if manifest is not None:
        config_desc = descriptor_from_json(manifest["config"])
        required.append(config_desc)
        required.extend(descriptor_from_json(raw) for raw in manifest.get("layers") or [])
        try:
            ids = chain_ids(json.loads(await client.content.read(config_desc.digest))["rootfs"]["diff_ids"])
            chain = ids[-1] if ids else ""
        except (NotFound, ValueError, KeyError):
            pass
    present = size = 0
    for desc in required:
        try:
            size += (await client.content.info(desc.digest)).size
            present += 1
        except NotFound:
            continue
    unpacked = False
    if chain:
        try:
            await client.snapshots(snapshotter).stat(chain)
            unpacked = True
        except NotFound:
            pass
    complete = manifest is not None and present == len(required)
    status = f"{'complete' if complete else 'incomplete'} ({present}/{len(required)})"
    target = image.target
    return ImageCheck(image.name, target.media_type, target.digest, status, present, len(required), size, unpacked)


async def _check(args: argparse.Namespace, client: Client) -> int:
    found = [await check(client, image, args.snapshotter) for image in await client.images.list(args.filters)]
    if args.quiet and getattr(args, "format", "table") != "json":
        for c in found:
            if c.present == c.required and c.unpacked:
                print(c.name)
        return 0
    show(
        args,
        found,
        ["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"],
        lambda c: [c.name, c.type, c.digest, c.status, human_size(c.size), str(c.unpacked).lower()],
    )
    return 0


async def _command(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False
    )


def _mount_key(target: str) -> str:
    return "pyctr-mount-" + hashlib.sha256(os.path.abspath(target).encode()).hexdigest()[:16]


async def _mount(args: argparse.Namespace, client: Client) -> None:
    platform = platforms.parse(args.platform) if args.platform else None
    config = await client.images.config(args.name, platform)
    key = _mount_key(args.target)
    target = os.path.abspath(args.target)  # noqa: ASYNC240  (a string operation, no I/O)
    lease = await client.leases.create(key, {"pyctr/mount-target": target})
    client.lease = lease.id
    snaps = client.snapshots(args.snapshotter)
    try:
        make = snaps.prepare if args.rw else snaps.view
        mounts = await make(key, config.chain_id)
        for m in mounts:
            options = ",".join(m.options)
            cmd = ["mount", "-t", m.type, *(["-o", options] if options else []), m.source, args.target]
            result = await _command(cmd)
            if result.returncode:
                raise RuntimeError(f"mount failed: {result.stderr.strip()}")
    except BaseException:
        client.lease = ""
        await client.leases.delete(lease.id)
        raise
    print(args.target)


async def _unmount(args: argparse.Namespace, client: Client) -> None:
    key = _mount_key(args.target)
    result = await _command(["umount", args.target])
    if result.returncode and "not mounted" not in result.stderr:
        raise RuntimeError(f"umount failed: {result.stderr.strip()}")
    try:
        await client.snapshots(args.snapshotter).remove(key)
    except NotFound:
        pass
    try:
        await client.leases.delete(key)
    except NotFound:
        pass
    print(args.target)
