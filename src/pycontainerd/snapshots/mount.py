"""Mount and unmount :class:`~pycontainerd.core.snapshots.Mount` lists with mount(2).

The syscall is called through ctypes rather than ``/bin/mount``: no helper process, exact
errno values, and no option rewriting by libmount. Options split like containerd's
``core/mount``: flag words (``ro``, ``rbind``, ``nosuid``...) become ``MS_*`` flags, the rest
is the data string handed to the filesystem.

Overlay mounts with many layers need care: the kernel copies at most one page of option
data, and absolute lowerdir paths fill 4 KiB at ~175 layers. :func:`compact_lowerdir`
rewrites the lowerdirs relative to their common directory and records that directory in
``Mount.chdir``; :func:`mount` then makes the syscall from a thread whose working directory
(and only that thread's, thanks to ``unshare(CLONE_FS)``) is ``chdir``.

The ``loop`` option (block-file snapshotters: ``ext4`` images) is handled here as containerd
does: the source file is attached to a loop device with autoclear (see :mod:`.loopdev`), that
device is mounted, and the kernel detaches it when the mount goes. ``direct-io`` next to
``loop`` sets direct I/O on the device instead of reaching the filesystem.

``uidmap=`` and ``gidmap=`` (both, or neither) ask for an ID-mapped mount, as containerd's
``core/mount`` does (see :mod:`.idmap`): an overlay gets ID-mapped clones of its lowerdirs,
attached under a temporary ``.idmap-*`` directory beside the target only while the overlay is
being mounted; any other mount is made, then an ID-mapped clone of it is stacked on the target.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import tempfile
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from pycontainerd.errdefs import InvalidArgument
from pycontainerd.snapshots import idmap, loopdev

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pycontainerd.core.snapshots import Mount

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2
CLONE_FS = 0x200

_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clear these flags, set these flags)
_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
    "remount": (0, MS_REMOUNT),
    "suid": (MS_NOSUID, 0),
    "nosuid": (0, MS_NOSUID),
    "dev": (MS_NODEV, 0),
    "nodev": (0, MS_NODEV),
    "exec": (MS_NOEXEC, 0),
    "noexec": (0, MS_NOEXEC),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "dirsync": (0, MS_DIRSYNC),
    "mand": (0, MS_MANDLOCK),
    "nomand": (MS_MANDLOCK, 0),
    "atime": (MS_NOATIME, 0),
    "noatime": (0, MS_NOATIME),
    "diratime": (MS_NODIRATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "nostrictatime": (MS_STRICTATIME, 0),
    "private": (0, MS_PRIVATE),
    "rprivate": (0, MS_PRIVATE | MS_REC),
    "shared": (0, MS_SHARED),
    "rshared": (0, MS_SHARED | MS_REC),
    "slave": (0, MS_SLAVE),
    "rslave": (0, MS_SLAVE | MS_REC),
    "unbindable": (0, MS_UNBINDABLE),
    "runbindable": (0, MS_UNBINDABLE | MS_REC),
}

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# containerd compacts once the options reach a page minus this margin (the kernel also
# needs room for the separators and the terminating NUL).
_COMPACT_MARGIN = 512

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """Split mount options into ``MS_*`` flags and the filesystem's data string."""
    flags = 0
    data: list[str] = []
    for opt in options:
        known = _FLAGS.get(opt)
        if known is None:
            data.append(opt)
        else:
            flags = (flags & ~known[0]) | known[1]
    return flags, ",".join(data)


def split_loop_options(options: Sequence[str]) -> tuple[bool, bool, tuple[str, ...]]:
    """``(loop, direct_io, other options)``: whether ``loop`` (and with it ``direct-io``) was asked for.

    ``direct-io`` is a loop-device setting only when ``loop`` is present; otherwise it stays
    among the options for the filesystem.
    """
    loop = "loop" in options
    rest = tuple(o for o in options if o != "loop" and not (loop and o == "direct-io"))
    return loop, loop and "direct-io" in options, rest


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() if data else None)
    _check(rc, f"mount {fstype} {source!r} on {target!r} (flags {flags:#x}, data {data!r})")


def _run_in_dir(directory: str, fn: Callable[[], None]) -> None:
    """Run ``fn`` in a fresh thread whose working directory is ``directory``.

    ``unshare(CLONE_FS)`` gives the thread its own cwd, so the process's other threads
    (asyncio's executor, the event loop) never see the change; the thread then exits.
    """
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _check(_libc.unshare(CLONE_FS), "unshare(CLONE_FS)")
            os.chdir(directory)
            fn()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=body, name="pycontainerd-mount-chdir", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _lowerdir_index(options: Sequence[str]) -> int:
    for i, opt in enumerate(options):
        if opt.startswith("lowerdir="):
            return i
    return -1


def compact_lowerdir(m: Mount) -> Mount:
    """``m`` with lowerdirs relative to their common parent directory, set as ``chdir``.

    Returns ``m`` unchanged when it is not an overlay, already has a ``chdir``, has a single
    lowerdir, or its lowerdirs share no directory but ``/``.
    """
    idx = _lowerdir_index(m.options)
    if m.type != "overlay" or m.chdir or idx < 0:
        return m
    dirs = m.options[idx][len("lowerdir=") :].split(":")
    if len(dirs) < 2 or not all(posixpath.isabs(d) for d in dirs):
        return m
    # Compare whole components: a string prefix could end mid-name ("snapshots/12" for
    # ".../12/fs" and ".../123/fs"). No lowerdir may *be* the common dir (it would become "").
    common = posixpath.commonpath(dirs)
    if common in dirs:
        common = posixpath.dirname(common)
    if common in ("", "/"):
        return m
    prefix = common + "/"
    relative = [d[len(prefix) :] for d in dirs]
    options = (*m.options[:idx], *m.options[idx + 1 :], "lowerdir=" + ":".join(relative))
    return replace(m, options=options, chdir=common)


def _too_long(options: Sequence[str]) -> bool:
    return sum(len(o) + 1 for o in options) >= PAGE_SIZE - _COMPACT_MARGIN


def split_idmap_options(options: Sequence[str]) -> tuple[str, str, tuple[str, ...]]:
    """``(uidmap, gidmap, other options)``: the values of ``uidmap=``/``gidmap=`` ("" when absent)."""
    uidmap = gidmap = ""
    rest = []
    for opt in options:
        if opt.startswith("uidmap="):
            uidmap = opt[len("uidmap=") :]
        elif opt.startswith("gidmap="):
            gidmap = opt[len("gidmap=") :]
        else:
            rest.append(opt)
    return uidmap, gidmap, tuple(rest)


def mount(m: Mount, target: str | os.PathLike[str]) -> int:
    """Mount ``m`` on ``target`` (an existing directory); returns how many mounts it stacked there.

    Raises:
        OSError: the syscall failed (``errno`` set; the message names source, target, options).
            A ``uidmap=`` without ``gidmap=`` (or the reverse) is EINVAL.
    """
    target = os.path.abspath(target)  # before any chdir
    uidmap, gidmap, options = split_idmap_options(m.options)
    if uidmap or gidmap:
        try:
            mapping = idmap.IDMap.parse(uidmap, gidmap)
        except InvalidArgument as exc:
            raise OSError(errno.EINVAL, f"{m.type} mount on {target!r}: {exc.message}") from exc
        return _mount_idmapped(replace(m, options=options), target, mapping)
    _mount_plain(m, target)
    return 1


def _mount_idmapped(m: Mount, target: str, mapping: idmap.IDMap) -> int:
    userns = idmap.userns_fd(mapping)
    try:
        if m.type == "overlay":
            _mount_idmapped_overlay(m, target, userns)
            return 1
        _mount_plain(m, target)
        try:
            idmap.idmap_in_place(target, userns)
        except BaseException:
            unmount(target, lazy=True)
            raise
        return 2
    finally:
        os.close(userns)


def _mapped_dirs(dirs: list[str], temp: str, userns: int, attached: list[str]) -> list[str]:
    """Attach ID-mapped read-only clones of ``dirs`` under ``temp``; their paths, in order.

    One clone of the common directory serves all of them when they share one (a snapshotter's
    ``snapshots/``); otherwise each gets its own clone. Attached points go to ``attached``.
    """
    common = posixpath.commonpath(dirs) if len(dirs) > 1 else posixpath.dirname(dirs[0])
    if common in dirs:
        common = posixpath.dirname(common)
    shared = common not in ("", "/")
    if shared:
        groups = [(common, temp)]
    else:
        groups = [(d, f"{temp}/{i}") for i, d in enumerate(dirs)]
        for _, point in groups:
            os.mkdir(point, 0o700)
    for source, point in groups:
        # Not recursive: a lowerdir is a directory of the snapshotter's own filesystem.
        fd = idmap.clone_idmapped(source, userns, read_only=True, recursive=False)
        try:
            idmap.attach(fd, point)
        finally:
            os.close(fd)
        attached.append(point)
    if shared:
        return [posixpath.join(temp, posixpath.relpath(d, common)) for d in dirs]
    return [point for _, point in groups]


def _mount_idmapped_overlay(m: Mount, target: str, userns: int) -> None:
    idx = _lowerdir_index(m.options)
    if idx < 0:
        raise OSError(errno.EINVAL, f"ID-mapped overlay on {target!r} needs a lowerdir option")
    dirs = m.options[idx][len("lowerdir=") :].split(":")
    dirs = [posixpath.normpath(posixpath.join(m.chdir, d)) if m.chdir else d for d in dirs]
    if not all(posixpath.isabs(d) for d in dirs):
        raise OSError(errno.EINVAL, f"ID-mapped overlay on {target!r}: lowerdirs must be absolute")
    # Beside the target: a bundle's rootfs gets it inside the bundle, whose removal unmounts
    # whatever a crash between attach and detach could leave.
    temp = tempfile.mkdtemp(prefix=".idmap-", dir=posixpath.dirname(target))
    attached: list[str] = []
    try:
        mapped = _mapped_dirs(dirs, temp, userns, attached)
        options = (*m.options[:idx], *m.options[idx + 1 :], "lowerdir=" + ":".join(mapped))
        _mount_plain(replace(m, options=options, chdir=""), target)
    finally:
        # overlayfs holds private clones of its layers: the temporary mounts can go now.
        for point in reversed(attached):
            try:
                unmount(point)
            except OSError:
                unmount(point, lazy=True)
        for point in reversed(attached):
            if point != temp:
                os.rmdir(point)
        os.rmdir(temp)


def _mount_plain(m: Mount, target: str) -> None:
    if m.type == "overlay" and _too_long(m.options):
        m = compact_lowerdir(m)
    loop, direct_io, options = split_loop_options(m.options)
    flags, data = parse_options(options)
    if m.type == "bind":
        # "mount -t bind" means a bind mount; mount(2) itself has no "bind" filesystem.
        flags |= MS_BIND
    if len(data) >= PAGE_SIZE:
        raise OSError(errno.E2BIG, f"mount options of {m.type} mount on {target!r} exceed one page")
    plain = flags & ~_PROPAGATION

    def do_mount() -> None:
        _sys_mount(m.source, target, m.type, plain, data)

    if loop and not plain & MS_REMOUNT:
        backing = os.path.join(m.chdir, m.source) if m.chdir else m.source
        # The descriptor is closed right after the mount: from then on the mount alone holds
        # the device, and autoclear detaches it on unmount (or now, if the mount failed).
        with loopdev.attached(backing, read_only=bool(plain & MS_RDONLY), direct_io=direct_io) as device:
            try:
                _sys_mount(device, target, m.type, plain, data)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror} (loop device for {backing!r})") from exc
    elif m.chdir:
        _run_in_dir(m.chdir, do_mount)
    else:
        do_mount()
    try:
        if flags & _PROPAGATION:
            _sys_mount("", target, "", flags & (_PROPAGATION | MS_REC | MS_SILENT), "")
        if plain & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            # MS_RDONLY is ignored when a bind mount is created; it takes a remount.
            _sys_mount("", target, "", plain | MS_REMOUNT, "")
    except OSError:
        unmount(target, lazy=True)
        raise


def mount_all(mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
    """Mount each of ``mounts`` on ``target`` in order; on failure undo the ones made."""
    done = 0
    try:
        for m in mounts:
            done += mount(m, target)
    except BaseException:
        for _ in range(done):
            unmount(target, lazy=True)
        raise


def unmount(target: str | os.PathLike[str], *, lazy: bool = False) -> None:
    """Unmount the top mount on ``target``; with ``lazy``, detach it even if busy."""
    path = os.fsencode(os.path.abspath(target))
    _check(_libc.umount2(path, MNT_DETACH if lazy else 0), f"unmount {os.fsdecode(path)!r}")


def unmount_all(target: str | os.PathLike[str]) -> None:
    """Unmount everything stacked on ``target``; busy mounts are detached lazily.

    A target that is not (or no longer) a mount point, or does not exist, is fine.
    """
    for _ in range(1000):  # a bound, so a kernel that keeps saying EBUSY cannot spin us forever
        try:
            unmount(target)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            if exc.errno != errno.EBUSY:
                raise
            unmount(target, lazy=True)
    raise OSError(errno.EBUSY, f"{target!r} still mounted after 1000 unmounts")
