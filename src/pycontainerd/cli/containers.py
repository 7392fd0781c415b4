"""``pyctr containers``: create, list, inspect, label and delete container records."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pycontainerd.cli._app import (
    add_command,
    command,
    group,
    jsonable,
    label_update,
    labels_text,
    parse_labels,
    print_json,
    show,
)
from pycontainerd.cli._spec import STOP_SIGNAL_LABEL, add_container_flags, build_spec, snapshot_labels
from pycontainerd.cli._userns import snapshot_parent, spec_idmap
from pycontainerd.core.containers import AnyValue, Container, Runtime
from pycontainerd.errdefs import NotFound
from pycontainerd.images import platforms
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    import argparse

    from pycontainerd.client.transfer import Client


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``containers`` and its subcommands."""
    containers = group(
        sub,
        "containers",
        "manage containers (records: image, spec, snapshot, runtime)",
        aliases=["container", "c"],
        details="A container is metadata; `pyctr tasks start` runs it, `pyctr run` does both.",
    )
    p = add_command(
        containers,
        "create",
        "create a container from an image (not started)",
        examples=[
            "pyctr containers create docker.io/library/busybox:latest web1 httpd -f -p 8080",
            "pyctr containers create --label app=web --env A=1 docker.io/library/busybox:latest c1",
        ],
        details="Makes a writable snapshot on the image's layers and stores the record; start it with\n"
        "`pyctr tasks start ID`.",
    )
    p.add_argument("image", help="image name (or, with --rootfs, a root directory)")
    p.add_argument("id", help="container ID")
    p.add_argument("command", nargs="...", help="command and arguments (default: the image's)")
    add_container_flags(p)
    p.set_defaults(run=command(_create))

    p = add_command(
        containers,
        "ls",
        "list containers",
        aliases=["list"],
        listing=True,
        examples=["pyctr containers ls", "pyctr c ls labels.app==web", "pyctr c ls --format json"],
    )
    p.add_argument("filters", nargs="*", help="containerd filters, e.g. image==docker.io/library/busybox:latest")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the IDs")
    p.set_defaults(run=command(_ls))

    p = add_command(
        containers,
        "info",
        "show a container's record (spec decoded) as JSON",
        examples=["pyctr containers info web1", "pyctr containers info --spec web1"],
    )
    p.add_argument("id")
    p.add_argument("--spec", action="store_true", help="only the OCI spec")
    p.set_defaults(run=command(_info))

    p = add_command(
        containers,
        "rm",
        "delete containers and their snapshots",
        aliases=["remove", "delete", "del"],
        examples=["pyctr containers rm web1 web2"],
        details="A container with a task is refused: `pyctr tasks rm -f ID` first.",
    )
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--keep-snapshot", action="store_true", help="leave the container's snapshot")
    p.set_defaults(run=command(_rm))

    p = add_command(
        containers,
        "label",
        "set and clear labels of a container",
        examples=["pyctr containers label web1 tier=front", "pyctr containers label web1 tier="],
    )
    p.add_argument("id")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE", help="an empty VALUE removes the label")
    p.set_defaults(run=command(_label))


async def create_container(args: argparse.Namespace, client: Client, container_id: str) -> Container:
    """The container the command line describes: snapshot prepared, record stored.

    Done under a temporary lease, so the collector cannot take the fresh snapshot before the
    record refers to it; on failure nothing is left behind."""
    async with client.leases.temporary():
        snapshotter, snapshot_key, image_config = "", "", None
        if not args.rootfs:
            platform = platforms.parse(args.platform) if args.platform else None
            image_config = await client.images.config(args.image, platform)
        spec = build_spec(args, client.namespace, container_id, list(args.command), image_config)
        labels = parse_labels(args.label)
        if image_config is not None:
            snaps = client.snapshots(args.snapshotter)
            snapshotter, snapshot_key = snaps.snapshotter, container_id
            parent = await snapshot_parent(
                client, snapshotter, image_config.chain_id, spec_idmap(spec), fallback=not args.remap_labels
            )
            await snaps.prepare(container_id, parent, snapshot_labels(args))
            stop = image_config.config.get("StopSignal")
            labels.setdefault(STOP_SIGNAL_LABEL, str(stop or "SIGTERM"))
        record = Container(
            id=container_id,
            runtime=Runtime(args.runtime),
            spec=AnyValue(oci.SPEC_TYPE_URL, oci.encode(spec)),
            image="" if args.rootfs else args.image,
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
            labels=labels,
        )
        try:
            return await client.containers.create(record)
        except Exception:
            if snapshot_key:
                await client.snapshots(snapshotter).remove(snapshot_key)
            raise


async def delete_container(client: Client, container: Container, *, keep_snapshot: bool = False) -> None:
    """Delete the record, then its snapshot (as ``WithSnapshotCleanup`` does)."""
    await client.containers.delete(container.id)
    if container.snapshot_key and not keep_snapshot:
        try:
            await client.snapshots(container.snapshotter).remove(container.snapshot_key)
        except NotFound:
            pass


async def _create(args: argparse.Namespace, client: Client) -> None:
    await create_container(args, client, args.id)


async def _ls(args: argparse.Namespace, client: Client) -> None:
    found = await client.containers.list(args.filters)
    show(
        args,
        found,
        ["CONTAINER", "IMAGE", "RUNTIME"],
        lambda c: [c.id, c.image or "-", c.runtime.name],
        quiet=lambda c: c.id,
    )


async def _info(args: argparse.Namespace, client: Client) -> None:
    container = await client.containers.get(args.id)
    record = jsonable(container)
    if args.spec:
        print_json(record["spec"]["value"] if record.get("spec") else {})
        return
    print_json(record)


async def _rm(args: argparse.Namespace, client: Client) -> int:
    failed = 0
    for container_id in args.ids:
        try:
            container = await client.containers.get(container_id)
            try:
                await client.tasks.get(container_id)
            except NotFound:
                pass
            else:
                raise RuntimeError(f"container {container_id} has a task: `pyctr tasks rm -f {container_id}` first")
            await delete_container(client, container, keep_snapshot=args.keep_snapshot)
        except Exception as exc:
            print(f"pyctr: failed to delete container {container_id}: {exc}", file=sys.stderr)
            failed = 1
    return failed


async def _label(args: argparse.Namespace, client: Client) -> None:
    container = await client.containers.get(args.id)
    labels, paths = label_update(container.labels, args.labels)
    if paths:
        container = await client.containers.update(
            Container(id=container.id, runtime=container.runtime, labels=labels), paths
        )
    print(labels_text(container.labels))
