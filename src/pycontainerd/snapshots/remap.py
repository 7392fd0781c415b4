"""Chown-remapped snapshots: user namespaces where the layers cannot be ID-mapped.

When a snapshotter does not advertise ``remap-ids`` (native, btrfs, blockfile; overlayfs where
ID-mapped mounts fail and ``slow_chown`` is on), a container with a user namespace gets its
image as a copy whose owners are shifted into the mapped range, as containerd's client does
(``WithUserNSRemappedSnapshot``): the image's snapshot ``P`` is prepared as ``K-remap``, every
file's owner is shifted (:func:`chown_tree`), and it is committed as ``K``
(:func:`remapped_snapshot_key`, the same digest as containerd 2.x). The container's snapshot is
then prepared on ``K`` instead of ``P``.

The copy is cached per (image, mapping): ``P`` gets the label :func:`keep_label` pointing at
``K``, so garbage collection keeps ``K`` for as long as the image's snapshot lives, and the
next container with the same mapping starts without the copy (containerd's copy lives only as
long as some container uses it).

The flows that drive a snapshotter live with their callers (``pyctr``'s client, the CRI plugin);
this module has the pieces they share.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from typing import TYPE_CHECKING

from pycontainerd.labels import GC_REF_SNAPSHOT_PREFIX
from pycontainerd.snapshots import mount as mounting

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pycontainerd.core.snapshots import Mount
    from pycontainerd.snapshots.idmap import IDMap, IDRange

log = logging.getLogger(__name__)

REMAP_SUFFIX = "-remap"
"""Suffix of the active snapshot a remapped copy is made in, before it is committed."""
_CAPABILITY_XATTR = "security.capability"


def remapped_snapshot_key(parent: str, idmap: IDMap) -> str:
    """The key of ``parent``'s chown-remapped copy for ``idmap`` (containerd 2.x's, so both agree).

    A digest of ``{"Parent": ..., "IDMap": {"UidMap": [...], "GidMap": [...]}}`` as Go marshals
    it, ranges sorted by container ID.
    """

    def oci(ranges: Sequence[IDRange]) -> list[dict[str, int]]:
        ordered = sorted(ranges, key=lambda r: r.container_id)
        return [{"containerID": r.container_id, "hostID": r.host_id, "size": r.size} for r in ordered]

    doc = {"Parent": parent, "IDMap": {"UidMap": oci(idmap.uids), "GidMap": oci(idmap.gids)}}
    return "sha256:" + hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def keep_label(snapshotter: str, key: str) -> tuple[str, str]:
    """The label (name, value) that makes a parent snapshot keep its remapped copy ``key``."""
    return f"{GC_REF_SNAPSHOT_PREFIX}{snapshotter}/userns-{key.removeprefix('sha256:')[:16]}", key


def chown_tree(root: str, idmap: IDMap) -> int:
    """Shift the owner of everything under ``root`` (itself included) to ``idmap``'s host IDs.

    Symlinks are changed, never followed. chown clears setuid/setgid bits and file
    capabilities: both are put back. Returns the number of entries changed.

    Raises:
        InvalidArgument: a file is owned by an ID the map does not cover.
    """
    changed = 0
    paths = [root]
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                paths.append(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    for path in paths:
        st = os.lstat(path)
        owner = idmap.host_uid(st.st_uid), idmap.host_gid(st.st_gid)
        if owner == (st.st_uid, st.st_gid):
            continue
        caps = None
        if stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                caps = os.getxattr(path, _CAPABILITY_XATTR, follow_symlinks=False)
        os.lchown(path, *owner)
        changed += 1
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        if caps is not None:
            try:
                os.setxattr(path, _CAPABILITY_XATTR, caps, follow_symlinks=False)
            except OSError as exc:
                log.debug("cannot restore file capabilities of %s: %s", path, exc)
    return changed


def remap_mounts(mounts: Sequence[Mount], idmap: IDMap) -> int:
    """Mount ``mounts`` (an active snapshot) on a temporary directory and :func:`chown_tree` it."""
    # rmdir, never rmtree: if the unmount failed, a recursive delete would empty the snapshot.
    target = tempfile.mkdtemp(prefix="pycontainerd-remap-")
    try:
        mounting.mount_all(mounts, target)
        try:
            return chown_tree(target, idmap)
        finally:
            mounting.unmount_all(target)
    finally:
        os.rmdir(target)
