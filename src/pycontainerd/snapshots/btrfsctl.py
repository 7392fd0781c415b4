"""btrfs subvolumes through the kernel's ioctls (what ``btrfs subvolume ...`` of btrfs-progs does).

No helper process: create, snapshot, delete, read the ID of, and flip the read-only flag of a
subvolume with ``fcntl.ioctl`` on a directory descriptor. Every call needs the path to be on a
mounted btrfs; creating and deleting need ``CAP_SYS_ADMIN`` (or the ``user_subvol_rm_allowed``
mount option for deletion). Errors are the kernel's, as ``OSError`` naming the path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import struct

_MAGIC = 0x94
_ARGS_SIZE = 4096  # btrfs_ioctl_vol_args, _vol_args_v2 and _ino_lookup_args are all one page


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (_MAGIC << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_MAGIC << 8) | nr


BTRFS_IOC_SUBVOL_CREATE = _iow(14, _ARGS_SIZE)
BTRFS_IOC_SNAP_DESTROY = _iow(15, _ARGS_SIZE)
BTRFS_IOC_INO_LOOKUP = (3 << 30) | (_ARGS_SIZE << 16) | (_MAGIC << 8) | 18
BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, _ARGS_SIZE)
BTRFS_IOC_SUBVOL_GETFLAGS = _ior(25, 8)
BTRFS_IOC_SUBVOL_SETFLAGS = _iow(26, 8)
BTRFS_SUBVOL_RDONLY = 1 << 1
FIRST_FREE_OBJECTID = 256
"""Inode number of every subvolume's root directory."""

_NAME_MAX = 255


def _fail(exc: OSError, what: str, path: str | os.PathLike[str]) -> OSError:
    return OSError(exc.errno, f"btrfs {what} {os.fspath(path)!r}: {os.strerror(exc.errno or 0)}")


def _split(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    parent, name = os.path.split(os.path.abspath(path))
    raw = os.fsencode(name)
    if not raw or len(raw) > _NAME_MAX:
        raise OSError(errno.EINVAL, f"bad subvolume name {name!r}")
    return parent, raw


def _vol_args(name: bytes) -> bytearray:
    # struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
    return bytearray(struct.pack("=q4088s", 0, name))


def _vol_args_v2(source_fd: int, flags: int, name: bytes) -> bytearray:
    # struct btrfs_ioctl_vol_args_v2 { __s64 fd; __u64 transid, flags; __u64 unused[4]; char name[4040]; }
    return bytearray(struct.pack("=qQQ4Q4040s", source_fd, 0, flags, 0, 0, 0, 0, name))


def _open_dir(path: str | os.PathLike[str]) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def is_subvolume(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (on btrfs) is the root directory of a subvolume."""
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_ino == FIRST_FREE_OBJECTID


def create_subvolume(path: str | os.PathLike[str]) -> None:
    """Create the empty subvolume ``path`` (its parent directory must exist)."""
    parent, name = _split(path)
    fd = _open_dir(parent)
    try:
        fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, _vol_args(name))
    except OSError as exc:
        raise _fail(exc, "subvolume create", path) from exc
    finally:
        os.close(fd)


def snapshot_subvolume(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, read_only: bool) -> None:
    """Make ``dest`` a snapshot of the subvolume ``source`` (writable unless ``read_only``)."""
    parent, name = _split(dest)
    src = _open_dir(source)
    try:
        fd = _open_dir(parent)
        try:
            args = _vol_args_v2(src, BTRFS_SUBVOL_RDONLY if read_only else 0, name)
            fcntl.ioctl(fd, BTRFS_IOC_SNAP_CREATE_V2, args)
        except OSError as exc:
            raise _fail(exc, f"subvolume snapshot of {os.fspath(source)!r} as", dest) from exc
        finally:
            os.close(fd)
    finally:
        os.close(src)


def subvolume_id(path: str | os.PathLike[str]) -> int:
    """The ID of the subvolume holding ``path`` (what ``subvolid=`` mounts take)."""
    fd = _open_dir(path)
    try:
        # struct btrfs_ioctl_ino_lookup_args { __u64 treeid, objectid; char name[4080]; }:
        # tree 0 means "the fd's own tree", and the kernel writes that tree's ID back.
        args = bytearray(struct.pack("=QQ4080s", 0, FIRST_FREE_OBJECTID, b""))
        fcntl.ioctl(fd, BTRFS_IOC_INO_LOOKUP, args)
    except OSError as exc:
        raise _fail(exc, "subvolume id of", path) from exc
    finally:
        os.close(fd)
    return int(struct.unpack_from("=Q", args)[0])


def is_read_only(path: str | os.PathLike[str]) -> bool:
    """Whether the subvolume ``path`` has its read-only flag set."""
    fd = _open_dir(path)
    try:
        flags = bytearray(8)
        fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, flags)
    except OSError as exc:
        raise _fail(exc, "subvolume flags of", path) from exc
    finally:
        os.close(fd)
    return bool(struct.unpack("=Q", flags)[0] & BTRFS_SUBVOL_RDONLY)


def set_read_only(path: str | os.PathLike[str], read_only: bool) -> None:
    """Set or clear the read-only flag of the subvolume ``path`` (``btrfs property set ro``)."""
    fd = _open_dir(path)
    try:
        flags = bytearray(8)
        fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, flags)
        current = struct.unpack("=Q", flags)[0]
        wanted = current | BTRFS_SUBVOL_RDONLY if read_only else current & ~BTRFS_SUBVOL_RDONLY
        if wanted != current:
            fcntl.ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, bytearray(struct.pack("=Q", wanted)))
    except OSError as exc:
        raise _fail(exc, "set read-only flag of", path) from exc
    finally:
        os.close(fd)


def _nested(path: str) -> list[str]:
    """Subvolumes inside the subvolume ``path``, deepest first (they are not descended into)."""
    found: list[str] = []
    for dirpath, dirnames, _ in os.walk(path):
        keep = []
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if is_subvolume(child):
                found.append(child)
            else:
                keep.append(name)
        dirnames[:] = keep
    return found[::-1]


def delete_subvolume(path: str | os.PathLike[str]) -> None:
    """Delete the subvolume ``path``, and any subvolume created inside it first.

    A read-only subvolume is deleted like any other. A nested subvolume (say, made by a
    container running on btrfs) would make the kernel answer ENOTEMPTY; those are deleted first.
    """
    parent, name = _split(path)
    for attempt in (1, 2):
        fd = _open_dir(parent)
        try:
            fcntl.ioctl(fd, BTRFS_IOC_SNAP_DESTROY, _vol_args(name))
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == 2:
                raise _fail(exc, "subvolume delete", path) from exc
        finally:
            os.close(fd)
        nested = _nested(os.fspath(path))
        if nested and is_read_only(path):
            set_read_only(path, False)  # their directory entries live in this subvolume
        for child in nested:
            delete_subvolume(child)


def delete_any(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` whatever it is: a subvolume, a directory tree, or a file; gone is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
    elif st.st_ino == FIRST_FREE_OBJECTID:
        delete_subvolume(path)
    else:
        for nested in _nested(os.fspath(path)):
            delete_subvolume(nested)
        shutil.rmtree(path)
