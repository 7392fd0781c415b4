"""User-namespace ID maps and ID-mapped mounts.

A container with a user namespace runs as, say, host UID 100000 while it believes it is root.
Its image layers are stored owned by host root (UID 0), and are shared with every other
container, so they must not be chowned. An *ID-mapped mount* (``mount_setattr`` with
``MOUNT_ATTR_IDMAP``, Linux >= 5.12 for ext4, 6.3 for tmpfs) shows a directory with shifted
owners instead: through a mount idmapped with the mapping ``0:100000:65536`` a file stored
as UID 0 appears owned by 100000, and a file created through it as 100000 is stored as 0.

The kernel takes the mapping from a user namespace file descriptor. A user namespace needs a
process to be created in; the daemon must not fork (grpcio is not fork-safe), so
:func:`userns_fd` runs util-linux ``unshare --user cat``, writes the mapping into the child's
``uid_map``/``gid_map`` from outside (root may), opens ``/proc/<pid>/ns/user`` and closes the
child's stdin. The descriptor keeps the namespace alive after the child has gone. About 2 ms.

:mod:`.remap` holds the slow alternative, chown-remapped copies of the layers.

overlayfs cannot be idmapped itself, but its lower directories can: :mod:`.mount` clones
the lowerdirs' common directory with an idmap (:func:`clone_idmapped`), attaches the clone
at a temporary place, mounts the overlay over the clone's paths and detaches the temporary
mount again (overlayfs keeps private references to its layers).

Option and label format (containerd's): ``uidmap=0:100000:65536`` and ``gidmap=...`` mount
options, labels :data:`UID_MAPPING_LABEL` / :data:`GID_MAPPING_LABEL` on snapshots, each a
comma-separated list of ``container:host:size`` ranges.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

UID_MAPPING_LABEL = "containerd.io/snapshot/uidmapping"
"""Snapshot label: the UID ranges the snapshot's container runs with (``c:h:s[,c:h:s...]``)."""
GID_MAPPING_LABEL = "containerd.io/snapshot/gidmapping"
"""Snapshot label: the GID ranges, as :data:`UID_MAPPING_LABEL`."""
CAPABILITY_REMAP_IDS = "remap-ids"
"""Snapshotter capability: it honours the mapping labels with ID-mapped mounts."""
CAPABILITY_ONLY_REMAP_IDS = "only-remap-ids"
"""Snapshotter capability: clients must not fall back to chown-remapped snapshots."""

INVALID_ID = (1 << 32) - 1
_MAX_RANGES = 340  # the kernel's limit of lines in uid_map (since 4.15)

# Syscall numbers shared by every architecture but alpha (the "new" syscall table).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_IDMAP = 0x100000
_MS_PRIVATE = 1 << 18
_USERNS_TIMEOUT = 10.0


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


# -- ID maps ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IDRange:
    """``size`` IDs from ``container_id`` inside the namespace are ``host_id``... outside."""

    container_id: int
    host_id: int
    size: int

    def __str__(self) -> str:
        return f"{self.container_id}:{self.host_id}:{self.size}"


def parse_ranges(text: str, what: str = "ID") -> tuple[IDRange, ...]:
    """``c:h:s[,c:h:s...]`` as ranges; InvalidArgument for anything else (or nothing)."""
    ranges = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 3:
                raise ValueError(item)
            c, h, s = (int(p) for p in parts)
        except ValueError:
            raise InvalidArgument(f"{what} mapping {item!r}: expected container-id:host-id:size") from None
        if not (0 <= c < INVALID_ID and 0 <= h < INVALID_ID and 0 < s < INVALID_ID):
            raise InvalidArgument(f"{what} mapping {item!r}: IDs must be below {INVALID_ID} and the size positive")
        if c + s > INVALID_ID or h + s > INVALID_ID:
            raise InvalidArgument(f"{what} mapping {item!r}: range overflows 32 bits")
        ranges.append(IDRange(c, h, s))
    if len(ranges) > _MAX_RANGES:
        raise InvalidArgument(f"{what} mapping: at most {_MAX_RANGES} ranges, got {len(ranges)}")
    return tuple(ranges)


def _to_host(id_: int, ranges: Sequence[IDRange], what: str) -> int:
    for r in ranges:
        if r.container_id <= id_ < r.container_id + r.size:
            return r.host_id + id_ - r.container_id
    raise InvalidArgument(f"container {what} {id_} cannot be mapped to a host {what}")


@dataclass(frozen=True, slots=True)
class IDMap:
    """The UID and GID ranges of one user namespace."""

    uids: tuple[IDRange, ...]
    gids: tuple[IDRange, ...]

    @classmethod
    def parse(cls, uidmap: str, gidmap: str) -> IDMap:
        """From the ``uidmap=``/``gidmap=`` option (or label) values; both are required."""
        if not uidmap or not gidmap:
            raise InvalidArgument("user namespace remapping needs both a UID and a GID mapping")
        return cls(parse_ranges(uidmap, "UID"), parse_ranges(gidmap, "GID"))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> IDMap | None:
        """The map a snapshot's labels ask for; None without mapping labels."""
        uidmap, gidmap = labels.get(UID_MAPPING_LABEL, ""), labels.get(GID_MAPPING_LABEL, "")
        if not uidmap and not gidmap:
            return None
        return cls.parse(uidmap, gidmap)

    @classmethod
    def from_oci(cls, uid_mappings: Iterable[Mapping[str, Any]], gid_mappings: Iterable[Mapping[str, Any]]) -> IDMap:
        """From OCI ``LinuxIDMapping`` objects (``containerID``, ``hostID``, ``size``)."""

        def ranges(items: Iterable[Mapping[str, Any]]) -> str:
            return ",".join(f"{int(m['containerID'])}:{int(m['hostID'])}:{int(m['size'])}" for m in items)

        return cls.parse(ranges(uid_mappings), ranges(gid_mappings))

    @property
    def uidmap(self) -> str:
        """The UID ranges as a label/option value."""
        return ",".join(str(r) for r in self.uids)

    @property
    def gidmap(self) -> str:
        """The GID ranges as a label/option value."""
        return ",".join(str(r) for r in self.gids)

    def labels(self) -> dict[str, str]:
        """The snapshot labels that ask a snapshotter for this map."""
        return {UID_MAPPING_LABEL: self.uidmap, GID_MAPPING_LABEL: self.gidmap}

    def mount_options(self) -> tuple[str, str]:
        """The ``uidmap=`` and ``gidmap=`` mount options."""
        return f"uidmap={self.uidmap}", f"gidmap={self.gidmap}"

    def root_pair(self) -> tuple[int, int]:
        """Host (UID, GID) of the container's root; InvalidArgument when 0 is not mapped."""
        return self.host_uid(0), self.host_gid(0)

    def host_uid(self, uid: int) -> int:
        """The host UID of container UID ``uid``; InvalidArgument when unmapped."""
        return _to_host(uid, self.uids, "UID")

    def host_gid(self, gid: int) -> int:
        """The host GID of container GID ``gid``; InvalidArgument when unmapped."""
        return _to_host(gid, self.gids, "GID")


# -- user namespaces --------------------------------------------------------------------


@functools.cache
def unshare_binary() -> str:
    """util-linux ``unshare`` (OSError when missing)."""
    found = shutil.which("unshare") or ("/usr/bin/unshare" if os.path.exists("/usr/bin/unshare") else "")
    if not found:
        raise OSError(errno.ENOENT, "util-linux unshare is needed to create user namespaces")
    return found


def proc_map(ranges: Sequence[IDRange]) -> str:
    """``ranges`` as the text of ``/proc/<pid>/uid_map`` (or ``gid_map``)."""
    return "".join(f"{r.container_id} {r.host_id} {r.size}\n" for r in ranges)


def userns_fd(idmap: IDMap, *, timeout: float = _USERNS_TIMEOUT) -> int:
    """A descriptor (close-on-exec) of a new user namespace with ``idmap``; the caller closes it.

    Raises:
        OSError: the helper could not create the namespace, or the kernel refused the map.
    """
    own = os.readlink("/proc/self/ns/user")
    proc = subprocess.Popen(
        [unshare_binary(), "--user", "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if os.readlink(f"/proc/{proc.pid}/ns/user") != own:
                    break
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise OSError(errno.EPERM, f"creating a user namespace failed: {err or proc.returncode}")
            if time.monotonic() > deadline:
                raise OSError(errno.ETIMEDOUT, "creating a user namespace: helper timed out")
            time.sleep(0.0002)
        for name, ranges in (("uid_map", idmap.uids), ("gid_map", idmap.gids)):
            try:
                with open(f"/proc/{proc.pid}/{name}", "w") as fh:
                    fh.write(proc_map(ranges))
            except OSError as exc:
                raise OSError(exc.errno, f"writing {name} {proc_map(ranges)!r}: {exc.strerror}") from exc
        return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        # cat ends at EOF on its stdin; kill it anyway if it lingers.
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# -- ID-mapped mounts -------------------------------------------------------------------


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def clone_idmapped(path: str, userns: int, *, read_only: bool = False, recursive: bool = True) -> int:
    """A detached clone of the mount at ``path`` (with its submounts when ``recursive``),
    ID-mapped with ``userns``.

    Returns the clone's descriptor (close-on-exec); closing it without :func:`attach` drops
    the clone. ``read_only`` makes the clone read-only.
    """
    tree = _AT_RECURSIVE if recursive else 0
    fd = _check(
        _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(_AT_FDCWD),
            os.fsencode(path),
            ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | tree),
        ),
        f"open_tree {path!r}",
    )
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP | (_MOUNT_ATTR_RDONLY if read_only else 0), 0, _MS_PRIVATE, userns)
        _check(
            _libc.syscall(
                _SYS_MOUNT_SETATTR,
                ctypes.c_int(fd),
                b"",
                ctypes.c_uint(_AT_EMPTY_PATH | tree),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"mount_setattr MOUNT_ATTR_IDMAP on {path!r}",
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def attach(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` on ``target`` (``move_mount``)."""
    _check(
        _libc.syscall(
            _SYS_MOVE_MOUNT,
            ctypes.c_int(fd),
            b"",
            ctypes.c_int(_AT_FDCWD),
            os.fsencode(target),
            ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
        ),
        f"move_mount onto {target!r}",
    )


def idmap_in_place(target: str, userns: int) -> None:
    """Stack an ID-mapped clone of the mount at ``target`` on ``target`` itself."""
    fd = clone_idmapped(target, userns)
    try:
        attach(fd, target)
    finally:
        os.close(fd)


@functools.cache
def _probe(directory: str) -> str | None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        probe = tempfile.mkdtemp(prefix="idmap-check-", dir=directory)
    except OSError as exc:
        return f"cannot probe {directory}: {exc.strerror}"
    try:
        ns = userns_fd(IDMap((IDRange(0, 666, 1),), (IDRange(0, 666, 1),)))
        try:
            os.close(clone_idmapped(probe, ns, read_only=True, recursive=False))
        finally:
            os.close(ns)
    except OSError as exc:
        return str(exc)
    finally:
        os.rmdir(probe)
    return None


def unsupported_reason(directory: str | os.PathLike[str]) -> str | None:
    """Why directories under ``directory`` cannot be ID-mapped here, or None when they can.

    Probed once per directory and process: an idmapped clone of a fresh subdirectory (never
    attached anywhere). ``directory`` is created (0700) when missing.
    """
    return _probe(os.path.abspath(directory))
