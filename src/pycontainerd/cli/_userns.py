"""What ``pyctr`` does for a container with a user namespace (``--uidmap``/``--gidmap``).

As containerd 2.x's client: the container's snapshot carries the mapping labels; a snapshotter
that advertises ``remap-ids`` shows the layers through ID-mapped mounts, so nothing else is
needed. Otherwise, unless it says ``only-remap-ids``, the container gets a chown-remapped copy
of the image as its parent (:mod:`pycontainerd.snapshots.remap`), made here, on this host, and
kept for the next container with the same mapping. The task's stdio pipes are given to the
mapped root (runc options ``IoUid``/``IoGid``, as ``ctr run --uidmap`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from pycontainerd.api.containerd.types.runc.options import oci_pb2
from pycontainerd.core.containers import AnyValue
from pycontainerd.core.snapshots import Info, Kind
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, NotFound
from pycontainerd.snapshots import remap
from pycontainerd.snapshots.idmap import CAPABILITY_ONLY_REMAP_IDS, CAPABILITY_REMAP_IDS, IDMap

if TYPE_CHECKING:
    from pycontainerd.client.transfer import Client
    from pycontainerd.core.containers import Container

RUNC_OPTIONS = "containerd.runc.v1.Options"
SNAPSHOTTER_TYPE = "io.containerd.snapshotter.v1"
WAIT_FOR_PEER = 300.0


def spec_idmap(spec: dict[str, Any]) -> IDMap | None:
    """The ID map of a spec's new user namespace; None without mappings."""
    linux = spec.get("linux") or {}
    uids, gids = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    if not uids and not gids:
        return None
    return IDMap.from_oci(uids, gids)


async def snapshot_parent(
    client: Client, snapshotter: str, parent: str, idmap: IDMap | None, *, fallback: bool = True
) -> str:
    """The parent to prepare the container's snapshot on: ``parent`` itself, or its remapped copy.

    Raises:
        FailedPrecondition: the snapshotter cannot ID-map the layers and no copy may be made
            (``only-remap-ids``, or not ``fallback``).
    """
    if idmap is None or not parent:
        return parent
    plugins = await client.introspection.plugins([f"type=={SNAPSHOTTER_TYPE},id=={snapshotter}"])
    capabilities = {c for p in plugins for c in p.capabilities}
    if CAPABILITY_REMAP_IDS in capabilities:
        return parent
    if not fallback:
        raise FailedPrecondition(
            f"snapshotter {snapshotter!r} cannot shift IDs itself (no {CAPABILITY_REMAP_IDS} capability): "
            "leave out --remap-labels to run on a chown-remapped copy of the image"
        )
    if CAPABILITY_ONLY_REMAP_IDS in capabilities:
        raise FailedPrecondition(
            f"snapshotter {snapshotter!r} does not support ID-mapped mounts on this host; "
            "configure slow_chown to allow the slower chown fallback"
        )
    idmap.root_pair()  # InvalidArgument without a mapping of root
    snaps = client.snapshots(snapshotter)
    key = remap.remapped_snapshot_key(parent, idmap)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_PEER
    while True:
        with contextlib.suppress(NotFound):
            await snaps.stat(key)
            return key
        try:
            mounts = await snaps.prepare(key + remap.REMAP_SUFFIX, parent)
            break
        except AlreadyExists:
            # Another client is making the same copy: wait for its commit.
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        await asyncio.to_thread(remap.remap_mounts, mounts, idmap)
        await snaps.commit(key, key + remap.REMAP_SUFFIX)
    except BaseException:
        with contextlib.suppress(Exception):
            await snaps.remove(key + remap.REMAP_SUFFIX)
        raise
    name, value = remap.keep_label(snapshotter, key)
    await snaps.update(Info(parent, Kind.COMMITTED, labels={name: value}), [f"labels.{name}"])
    return key


def task_options(container: Container) -> AnyValue | None:
    """Runtime options giving the task's stdio to the user namespace's root; None without one.

    The container's own runc options are kept; another runtime's options are left alone.
    """
    spec = json.loads(container.spec.value) if container.spec else {}
    idmap = spec_idmap(spec)
    if idmap is None:
        return None
    options = oci_pb2.Options()
    own = container.runtime.options
    if own is not None:
        if not own.type_url.endswith(RUNC_OPTIONS):
            return None
        options.ParseFromString(own.value)
    options.io_uid, options.io_gid = idmap.root_pair()
    return AnyValue(RUNC_OPTIONS, options.SerializeToString())
