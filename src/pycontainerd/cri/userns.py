"""The root filesystem of a pod with a user namespace (``userns_options`` mode POD).

As containerd 2.x's CRI: the snapshot of each of the pod's containers (and of a pause image)
carries the pod's mappings as ``containerd.io/snapshot/uidmapping``/``gidmapping`` labels. A
snapshotter with the ``remap-ids`` capability (overlayfs where ID-mapped mounts work) shows the
image layers owned by the mapped IDs through ID-mapped mounts; for any other the snapshot is
prepared on a chown-remapped copy of the image, made once per (image, mapping) and kept while
the image's snapshot lives (:mod:`pycontainerd.snapshots.remap`); ``only-remap-ids`` refuses.

Mounts kubelet asks to be ID-mapped (the pod's /etc files, volumes) are the shim's business:
see :mod:`pycontainerd.runc_shim.idmounts`.

The pod's network namespace must be owned by its user namespace, or the pause process could not
mount sysfs for it: :func:`create_pod_netns` makes both at once (util-linux ``unshare --user
--net cat``; the mapping is written and both namespaces are bind-mounted from outside) and pins
the user namespace beside the network namespace's pin (:func:`userns_pin`), for the pause
container to join.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cni.netns import NETNS_PREFIX, is_netns, remove_netns
from pycontainerd.core.snapshots import Info, Kind, Mount
from pycontainerd.errdefs import AlreadyExists, FailedPrecondition, NotFound
from pycontainerd.snapshots import mount as mounting
from pycontainerd.snapshots import remap
from pycontainerd.snapshots.idmap import (
    CAPABILITY_ONLY_REMAP_IDS,
    CAPABILITY_REMAP_IDS,
    IDMap,
    IDRange,
    proc_map,
    unshare_binary,
)

if TYPE_CHECKING:
    from pycontainerd.cri.service import CRIService
    from pycontainerd.metadata.snapshots import NamespacedSnapshotter
    from pycontainerd.namespaces import RequestContext

log = logging.getLogger(__name__)

WAIT_FOR_PEER = 300.0
"""How long a container waits for another one making the same remapped copy."""
NETNS_TIMEOUT = 10.0
USERNS_DIR = "userns"


def pod_idmap(config: Any) -> IDMap | None:
    """The ID map of a pod's user namespace (mode POD with mappings); None otherwise."""
    nsopts = config.linux.security_context.namespace_options
    if not nsopts.HasField("userns_options") or nsopts.userns_options.mode != api.POD:
        return None
    userns = nsopts.userns_options
    if not userns.uids or not userns.gids:
        return None

    def ranges(items: Any) -> tuple[IDRange, ...]:
        return tuple(IDRange(int(m.container_id), int(m.host_id), int(m.length)) for m in items)

    return IDMap(ranges(userns.uids), ranges(userns.gids))


async def snapshot_parent(
    svc: CRIService, ctx: RequestContext, snapshotter_name: str, parent: str, config: Any
) -> tuple[str, dict[str, str]]:
    """``(parent, labels)`` to prepare a snapshot of ``parent`` for a container of the pod ``config``.

    Raises:
        FailedPrecondition: the snapshotter allows ID-mapped mounts only and cannot make them.
        InvalidArgument: the mapping does not map root, or the image has an unmapped owner.
    """
    idmap = pod_idmap(config)
    if idmap is None or not parent:
        return parent, {}
    idmap.root_pair()  # InvalidArgument without a mapping of root
    snapshotter = svc.metadata.snapshotters[snapshotter_name]
    capabilities = tuple(getattr(snapshotter.backend, "capabilities", ()))
    if CAPABILITY_REMAP_IDS in capabilities:
        return parent, idmap.labels()
    if CAPABILITY_ONLY_REMAP_IDS in capabilities:
        raise FailedPrecondition(
            f"snapshotter {snapshotter_name!r} does not support ID-mapped mounts on this host; "
            "configure slow_chown to allow the slower chown fallback"
        )
    return await _remapped(snapshotter, ctx, parent, idmap), idmap.labels()


async def _remapped(snapshotter: NamespacedSnapshotter, ctx: RequestContext, parent: str, idmap: IDMap) -> str:
    key = remap.remapped_snapshot_key(parent, idmap)
    work = key + remap.REMAP_SUFFIX
    deadline = time.monotonic() + WAIT_FOR_PEER
    while True:
        with contextlib.suppress(NotFound):
            snapshotter.stat(ctx, key)
            return key
        try:
            mounts = snapshotter.prepare(ctx, work, parent)
            break
        except AlreadyExists:
            # Another container of the same image and mapping is making the copy.
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        started = time.monotonic()
        changed = await asyncio.to_thread(remap.remap_mounts, mounts, idmap)
        snapshotter.commit(ctx, key, work)
        took = time.monotonic() - started
        log.info("chown-remapped %s for %s: %d entries in %.2fs", parent, idmap.uidmap, changed, took)
    except BaseException:
        with contextlib.suppress(NotFound):
            snapshotter.remove(ctx, work)
        raise
    name, value = remap.keep_label(snapshotter.name, key)
    snapshotter.update(ctx, Info(parent, Kind.COMMITTED, labels={name: value}), [f"labels.{name}"])
    return key


# -- the pod's network namespace, owned by its user namespace ----------------------------------


def userns_pin(netns_path: str) -> str:
    """Where the user namespace owning the pinned network namespace ``netns_path`` is pinned:
    ``<netns dir>/../userns/<same name>``."""
    path = Path(netns_path)
    return str(path.parent.parent / USERNS_DIR / path.name)


def pinned_userns(netns_path: str) -> str:
    """The pinned user namespace owning ``netns_path``, or "" when it has none."""
    if not netns_path:
        return ""
    path = userns_pin(netns_path)
    return path if os.path.ismount(path) else ""


def _pin_file(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))


def _create_pinned(netns: str, user: str, idmap: IDMap) -> None:
    # util-linux can pin both itself (--user=F --net=F), but its pin of the user namespace
    # fails with EPERM here; the bind mounts are made from this process instead.
    own_user, own_net = os.readlink("/proc/self/ns/user"), os.readlink("/proc/self/ns/net")
    proc = subprocess.Popen(
        [unshare_binary(), "--user", "--net", "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
    )
    try:
        deadline = time.monotonic() + NETNS_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                ns = f"/proc/{proc.pid}/ns"
                if os.readlink(f"{ns}/user") != own_user and os.readlink(f"{ns}/net") != own_net:
                    break
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise OSError(errno.EIO, f"creating a network namespace in a user namespace: {err or proc.returncode}")
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "creating a network namespace in a user namespace: timed out")
            time.sleep(0.0005)
        for name, ranges in (("uid_map", idmap.uids), ("gid_map", idmap.gids)):
            with open(f"/proc/{proc.pid}/{name}", "w") as fh:
                fh.write(proc_map(ranges))
        mounting.mount(Mount("bind", f"/proc/{proc.pid}/ns/net"), netns)
        mounting.mount(Mount("bind", f"/proc/{proc.pid}/ns/user"), user)
    finally:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(NETNS_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    if not is_netns(netns):
        raise OSError(errno.EIO, f"creating network namespace {netns}: not pinned")


async def create_pod_netns(netns_dir: Path, idmap: IDMap) -> str:
    """A network namespace owned by a new user namespace with ``idmap``, both pinned; the
    network namespace's pin path (the user namespace's is :func:`userns_pin` of it).

    Raises:
        OSError: the helper failed; nothing is left behind.
    """

    def create() -> str:
        netns = os.path.join(os.path.abspath(netns_dir), f"{NETNS_PREFIX}{uuid.uuid4()}")
        _pin_file(netns)
        try:
            _pin_file(userns_pin(netns))
            _create_pinned(netns, userns_pin(netns), idmap)
        except BaseException:
            remove_pod_netns_sync(netns)
            raise
        return netns

    return await asyncio.to_thread(create)


def remove_pod_netns_sync(netns_path: str) -> None:
    """Unpin and delete a network namespace and the user namespace pinned beside it (idempotent)."""
    remove_netns(netns_path)
    remove_netns(userns_pin(netns_path))  # the same unmount-and-unlink works for any pin
