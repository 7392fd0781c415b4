"""ID-mapped bind mounts for OCI runtimes that cannot make them (runc before 1.2).

The OCI spec lets a mount carry ``uidMappings``/``gidMappings``: the runtime then makes it an
ID-mapped mount, so a volume owned by host root looks owned by the container's root inside a
user namespace, and what the container writes there is stored as host root. containerd's CRI
(and kubelet, for volumes) ask for this for every mount of a pod with a user namespace. runc
1.1 ignores the fields: the mount shows up owned by nobody, read-only in practice.

So, before ``runc create``, when the runtime's ``features`` do not list ID-mapped mounts, the
shim makes each such bind mount itself: an ID-mapped clone of the source (see
:mod:`pycontainerd.snapshots.idmap`) attached at ``<bundle>/idmapped/<n>``; the spec's mount then
binds that path, without the mapping fields (a bind of an ID-mapped mount stays ID-mapped).
They are unmounted with the rootfs; the daemon's bundle removal unmounts whatever a crash left.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import stat
import subprocess
from typing import Any

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.snapshots import idmap
from pycontainerd.snapshots import mount as mounting

log = logging.getLogger(__name__)

DIRECTORY = "idmapped"
FEATURES_TIMEOUT = 10.0
LEGACY_CREATE_OPTIONS = "containerd.linux.runc.CreateOptions"
"""What ctr 1.6 sends for a runtime not named ``io.containerd.runc.*`` (ours as ``io.containerd.pyrunc.v2``)."""
_LEGACY_IO_UID, _LEGACY_IO_GID = 10, 11


def legacy_io_owner(value: bytes) -> tuple[int, int] | None:
    """``(io_uid, io_gid)`` of a serialized ``containerd.linux.runc.CreateOptions``; None when
    both are 0 or the bytes do not parse. Only those two varint fields are read."""
    found = {_LEGACY_IO_UID: 0, _LEGACY_IO_GID: 0}
    pos = 0

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = value[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    try:
        while pos < len(value):
            key = varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                field = varint()
                if number in found:
                    found[number] = field
            elif wire == 2:
                length = varint()  # not `pos += varint()`: that would add to the old pos
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                return None
    except IndexError:
        return None
    owner = (found[_LEGACY_IO_UID], found[_LEGACY_IO_GID])
    return owner if owner != (0, 0) else None


@functools.cache
def runtime_idmaps_mounts(binary: str) -> bool:
    """Whether the OCI runtime ``binary`` makes ID-mapped mounts itself (``<binary> features``)."""
    try:
        out = subprocess.run([binary, "features"], capture_output=True, timeout=FEATURES_TIMEOUT, check=True).stdout
        features = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    try:
        return bool(features["linux"]["mountExtensions"]["idmap"]["enabled"])
    except (KeyError, TypeError):
        return False


def _wanted(m: dict[str, Any]) -> idmap.IDMap | None:
    options = m.get("options") or []
    if m.get("type") not in ("bind", "none") and "bind" not in options and "rbind" not in options:
        return None
    if not m.get("uidMappings") or not m.get("gidMappings"):
        return None
    try:
        return idmap.IDMap.from_oci(m["uidMappings"], m["gidMappings"])
    except (InvalidArgument, KeyError, TypeError, ValueError):
        return None  # the runtime will say what is wrong


def prepare(bundle: str, binary: str) -> int:
    """Make the ID-mapped mounts the spec asks for when ``binary`` cannot; returns how many.

    Rewrites ``<bundle>/config.json`` when it makes any. On failure nothing stays mounted.
    """
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as fh:
            spec = json.load(fh)
    except (OSError, ValueError):
        return 0
    wanted = [(m, w) for m in spec.get("mounts") or [] if (w := _wanted(m)) is not None]
    if not wanted or runtime_idmaps_mounts(binary):
        return 0
    base = os.path.join(bundle, DIRECTORY)
    os.makedirs(base, mode=0o711, exist_ok=True)
    made = 0
    try:
        for m, mapping in wanted:
            point = os.path.join(base, str(made))
            if stat.S_ISDIR(os.stat(m["source"]).st_mode):
                os.mkdir(point, 0o711)
            else:
                os.close(os.open(point, os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            userns = idmap.userns_fd(mapping)
            try:
                fd = idmap.clone_idmapped(m["source"], userns, recursive="rbind" in (m.get("options") or []))
                try:
                    idmap.attach(fd, point)
                finally:
                    os.close(fd)
            finally:
                os.close(userns)
            made += 1
            m["source"] = point
            m.pop("uidMappings")
            m.pop("gidMappings")
        tmp = path + ".idmapped.tmp"
        with open(tmp, "w") as fh:
            json.dump(spec, fh)
        os.replace(tmp, path)
    except BaseException:
        release(bundle)
        raise
    return made


def release(bundle: str) -> None:
    """Unmount and remove what :func:`prepare` made (idempotent)."""
    base = os.path.join(bundle, DIRECTORY)
    if not os.path.isdir(base):
        return
    for name in os.listdir(base):
        point = os.path.join(base, name)
        try:
            mounting.unmount_all(point)
        except OSError as exc:
            log.warning("cannot unmount %s: %s", point, exc)
            continue
        with contextlib.suppress(OSError):
            if os.path.isdir(point) and not os.path.islink(point):
                os.rmdir(point)
            else:
                os.unlink(point)
    with contextlib.suppress(OSError):
        os.rmdir(base)
