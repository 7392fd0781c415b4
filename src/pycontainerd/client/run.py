"""Run a container from an image, from Python: what ``ctr run --rm`` does, as a library call.

The image must be in the namespace and unpacked for the snapshotter (``pull`` or
``import_archive`` do both). The container gets containerd's default Linux spec with the image
config's environment and working directory, a snapshot on top of the image's top layer,
and stdout/stderr through FIFOs that this process reads; everything it made is removed when the
process exits (or when anything fails on the way).

::

    client = Client("/run/pycontainerd/pycontainerd.sock")
    result = await run(client, "docker.io/library/busybox:latest", ["echo", "hi"])
    assert result.stdout == b"hi\\n" and result.exit_status == 0
    # or, without an event loop of your own:
    result = run_sync("/run/pycontainerd/pycontainerd.sock", "docker.io/library/busybox:latest", ["true"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.client.cio import FifoReader
from pycontainerd.client.transfer import Client
from pycontainerd.core.images import Descriptor
from pycontainerd.images.manifest import chain_ids, manifests
from pycontainerd.oci import spec as oci

if TYPE_CHECKING:
    from collections.abc import Sequence


OUTPUT_GRACE = 2.0
"""Seconds to wait for the last output after the process ended."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How the container ended and what it wrote."""

    exit_status: int
    stdout: bytes
    stderr: bytes


async def _read_blob(client: Client, digest: str) -> bytes:
    stub = content_pb2_grpc.ContentStub(client.channel())
    parts = [r.data async for r in stub.Read(content_pb2.ReadContentRequest(digest=digest), metadata=client.metadata)]
    return b"".join(parts)


async def _image_config(client: Client, image: str) -> tuple[str, dict[str, Any]]:
    """(top chain ID, image config) for the host platform."""
    stub = images_pb2_grpc.ImagesStub(client.channel())
    target = (await stub.Get(images_pb2.GetImageRequest(name=image), metadata=client.metadata)).image.target
    blobs: dict[str, bytes] = {}

    async def fetch(desc: dict[str, Any] | Any) -> None:
        digest = desc["digest"] if isinstance(desc, dict) else desc.digest
        blobs[digest] = await _read_blob(client, digest)
        doc = json.loads(blobs[digest])
        children = list(doc.get("manifests") or [])
        if "config" in doc:
            children.append(doc["config"])
        for child in children:
            if child["digest"] not in blobs:
                with contextlib.suppress(Exception):  # other platforms may be absent
                    await fetch(child)

    await fetch(target)
    root = Descriptor(target.media_type, target.digest, target.size)
    found = manifests(lambda d: blobs[d], root)[0]
    return chain_ids(found.diff_ids)[-1], found.config.get("config") or {}


async def run(
    client: Client,
    image: str,
    args: Sequence[str] | None = None,
    *,
    name: str = "",
    runtime: str = "io.containerd.runc.v2",
    snapshotter: str = "overlayfs",
    env: Sequence[str] = (),
) -> RunResult:
    """Run ``args`` (default: the image's entrypoint and command) in a new container; wait.

    Without a lease of the caller's, everything is made under a temporary one (as containerd's
    client does), so the garbage collector cannot take the fresh snapshot before the container
    record points at it."""
    if client.lease:
        return await _run(client, image, args, name=name, runtime=runtime, snapshotter=snapshotter, env=env)
    leases = leases_pb2_grpc.LeasesStub(client.channel())
    lease_id = f"run-{secrets.token_hex(8)}"
    expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    await leases.Create(
        leases_pb2.CreateRequest(id=lease_id, labels={"containerd.io/gc.expire": expire}), metadata=client.metadata
    )
    client.lease = lease_id
    try:
        return await _run(client, image, args, name=name, runtime=runtime, snapshotter=snapshotter, env=env)
    finally:
        client.lease = ""
        with contextlib.suppress(grpc.aio.AioRpcError):
            await leases.Delete(leases_pb2.DeleteRequest(id=lease_id), metadata=client.metadata)


async def _run(
    client: Client,
    image: str,
    args: Sequence[str] | None,
    *,
    name: str,
    runtime: str,
    snapshotter: str,
    env: Sequence[str],
) -> RunResult:
    name = name or f"run-{secrets.token_hex(6)}"
    chain, config = await _image_config(client, image)
    process = list(args) if args else [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    spec = oci.default_spec(client.namespace, name, process)
    spec["process"]["env"] = [*(config.get("Env") or spec["process"]["env"]), *env]
    spec["process"]["cwd"] = config.get("WorkingDir") or "/"
    md = client.metadata
    ch = client.channel()
    snapshots = snapshots_pb2_grpc.SnapshotsStub(ch)
    containers = containers_pb2_grpc.ContainersStub(ch)
    tasks = tasks_pb2_grpc.TasksStub(ch)
    cleanups: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="pycontainerd-run-") as fifo_dir:
        try:
            prepared = await snapshots.Prepare(
                snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=name, parent=chain), metadata=md
            )
            cleanups.append(
                lambda: snapshots.Remove(
                    snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=name), metadata=md
                )
            )
            record = containers_pb2.Container(
                id=name,
                image=image,
                runtime=containers_pb2.Container.Runtime(name=runtime),
                spec=any_pb2.Any(type_url=oci.SPEC_TYPE_URL, value=oci.encode(spec)),
                snapshotter=snapshotter,
                snapshot_key=name,
            )
            await containers.Create(containers_pb2.CreateContainerRequest(container=record), metadata=md)
            cleanups.append(lambda: containers.Delete(containers_pb2.DeleteContainerRequest(id=name), metadata=md))
            out_path, err_path = os.path.join(fifo_dir, "stdout"), os.path.join(fifo_dir, "stderr")
            os.mkfifo(out_path)
            os.mkfifo(err_path)
            # Open for reading without blocking (the shim opens the write ends later).
            readers = [FifoReader(out_path), FifoReader(err_path)]
            cleanups.append(lambda: _close_all(readers))
            await tasks.Create(
                tasks_pb2.CreateTaskRequest(
                    container_id=name, rootfs=list(prepared.mounts), stdout=out_path, stderr=err_path
                ),
                metadata=md,
            )
            cleanups.append(lambda: tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=name), metadata=md))
            waiting = tasks.Wait(tasks_pb2.WaitRequest(container_id=name), metadata=md)
            await tasks.Start(tasks_pb2.StartRequest(container_id=name), metadata=md)
            ended = await waiting
            stdout, stderr = [await r.result(OUTPUT_GRACE) for r in readers]
            return RunResult(int(ended.exit_status), stdout, stderr)
        finally:
            for cleanup in reversed(cleanups):
                with contextlib.suppress(Exception):
                    await cleanup()


async def _close_all(readers: list[FifoReader]) -> None:
    for reader in readers:
        reader.close()


def run_sync(
    address: str, image: str, args: Sequence[str] | None = None, *, namespace: str = "default", **kwargs: Any
) -> RunResult:
    """:func:`run` for code without an event loop."""

    async def main() -> RunResult:
        client = Client(address, namespace)
        try:
            return await run(client, image, args, **kwargs)
        finally:
            await client.close()

    return asyncio.run(main())
