"""Loop devices: a regular file made to look like a block device, set up with ioctls.

What ``mount -o loop`` does, without ``losetup``: ask ``/dev/loop-control`` for a free device,
bind the file to it (``LOOP_CONFIGURE``, or ``LOOP_SET_FD`` + ``LOOP_SET_STATUS64`` on kernels
older than 5.8) and hand back an open descriptor of the device. Devices are set up with
*autoclear*: the kernel detaches the file once the last user lets go, so a device held only by
a mount disappears with the unmount and one that was never mounted disappears when the
descriptor is closed. Nothing is left attached if the caller crashes between the two.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import struct
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

LOOP_CONTROL = "/dev/loop-control"

# <linux/loop.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_SET_DIRECT_IO = 0x4C08
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16

# struct loop_info64: device, inode, rdevice, offset, sizelimit (u64); number, encrypt_type,
# encrypt_key_size, flags (u32); file_name[64], crypt_name[64], encrypt_key[32]; init[2] (u64).
_INFO64 = "5Q4I64s64s32s2Q"
# struct loop_config: fd, block_size (u32); loop_info64; reserved[8] (u64).
_CONFIG = f"=2I{_INFO64}8Q"

_ATTEMPTS = 100


def _info64(path: str, flags: int) -> tuple[object, ...]:
    name = os.fsencode(path)[:63]
    return (0, 0, 0, 0, 0, 0, 0, 0, flags, name, b"", b"", 0, 0)


def _configure(loop_fd: int, backing_fd: int, backing: str, flags: int) -> None:
    config = bytearray(struct.pack(_CONFIG, backing_fd, 0, *_info64(backing, flags), *([0] * 8)))
    try:
        fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):
            raise
    # A kernel without LOOP_CONFIGURE (< 5.8): the three-step form.
    fcntl.ioctl(loop_fd, LOOP_SET_FD, backing_fd)
    try:
        info = bytearray(struct.pack(f"={_INFO64}", *_info64(backing, flags & ~LO_FLAGS_DIRECT_IO)))
        fcntl.ioctl(loop_fd, LOOP_SET_STATUS64, info)
        if flags & LO_FLAGS_DIRECT_IO:
            fcntl.ioctl(loop_fd, LOOP_SET_DIRECT_IO, 1)
    except BaseException:
        fcntl.ioctl(loop_fd, LOOP_CLR_FD, 0)
        raise


def attach(backing: str, *, read_only: bool = False, direct_io: bool = False) -> tuple[int, str]:
    """Attach ``backing`` to a free loop device with autoclear set.

    Returns:
        An open descriptor of the device (the caller closes it, typically right after mounting
        the device) and the device's path, ``/dev/loopN``.

    Raises:
        OSError: no loop support (``/dev/loop-control`` missing), the file cannot be opened, or
            the kernel refused the device.
    """
    mode = os.O_RDONLY if read_only else os.O_RDWR
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0) | (LO_FLAGS_DIRECT_IO if direct_io else 0)
    backing = os.path.abspath(backing)
    backing_fd = os.open(backing, mode | os.O_CLOEXEC)
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            ctl = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
            try:
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
            path = f"/dev/loop{number}"
            loop_fd = os.open(path, mode | os.O_CLOEXEC)
            try:
                _configure(loop_fd, backing_fd, backing, flags)
            except OSError as exc:
                os.close(loop_fd)
                # Another process took the same free device between GET_FREE and CONFIGURE
                # (util-linux's losetup retries the same way): back off a little, try again.
                if exc.errno != errno.EBUSY or attempt == _ATTEMPTS:
                    raise OSError(exc.errno, f"attach {backing!r} to {path}: {os.strerror(exc.errno or 0)}") from exc
                time.sleep(random.uniform(0, attempt / 1000))  # jitter only
                continue
            except BaseException:
                os.close(loop_fd)
                raise
            return loop_fd, path
    finally:
        os.close(backing_fd)
    raise AssertionError("unreachable")


@contextmanager
def attached(backing: str, *, read_only: bool = False, direct_io: bool = False) -> Iterator[str]:
    """``backing`` on a loop device for the block; the device is released when the block ends
    unless something (a mount) still holds it, in which case it goes when that does."""
    fd, path = attach(backing, read_only=read_only, direct_io=direct_io)
    try:
        yield path
    finally:
        os.close(fd)


def backing_files() -> dict[str, str]:
    """Every attached loop device with the path of its backing file (``losetup -a``)."""
    found: dict[str, str] = {}
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return found
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                found[f"/dev/{name}"] = f.read().rstrip("\n")
        except OSError:
            continue  # not attached
    return found


def detach(device: str) -> None:
    """Detach ``device`` now (``losetup -d``); for devices set up without autoclear."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    finally:
        os.close(fd)
