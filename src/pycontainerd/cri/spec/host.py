"""What the spec builders need to know about the real host, and the little I/O they may delegate.

:func:`host_options` probes the host once (cgroup mode and controllers, the daemon's
capabilities and OOM score, seccomp and AppArmor support...) and returns
:class:`~pycontainerd.cri.spec.options.SpecOptions` with the probing callables filled in;
:func:`device_nodes`, :func:`ensure_host_path` and :func:`lookup_mount` are those callables.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
from typing import Any

from pycontainerd.cri.spec.capabilities import KNOWN_CAPABILITIES, capabilities_from_mask
from pycontainerd.cri.spec.options import HostDevice, SpecOptions
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, NotFound

CGROUP_ROOT = "/sys/fs/cgroup"
# Directories of /dev that hold no device nodes for a container (or are mounted by the runtime).
_SKIPPED_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _device(path: str, subpath: str = "") -> HostDevice | None:
    st = os.lstat(path)
    if stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        return None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    mode = stat.S_IMODE(st.st_mode)
    return HostDevice(path, kind, major, minor, file_mode=mode, uid=st.st_uid, gid=st.st_gid, subpath=subpath)


def _walk(root: str, relative: str, userns: bool) -> list[HostDevice]:
    found: list[HostDevice] = []
    with os.scandir(os.path.join(root, relative)) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            sub = os.path.join(relative, entry.name) if relative else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIPPED_DIRS:
                        found += _walk(root, sub, userns)
                    continue
                if entry.name == "console":
                    continue
                dev = _device(entry.path, sub)
            except FileNotFoundError:
                continue
            except PermissionError:
                if userns:  # rootless: use what is readable
                    continue
                raise
            if dev is not None and dev.type != "p":
                found.append(dev)
    return found


def device_nodes(path: str) -> list[HostDevice]:
    """The device node at ``path``, or every node below the directory ``path`` (containerd's walk).

    Symlinks in ``path`` are resolved first. Below a directory, FIFOs, ``console`` and the
    ``pts``, ``shm``, ``fd`` and ``mqueue`` directories are skipped.

    Raises:
        NotFound: nothing at ``path``.
        InvalidArgument: ``path`` is a file but no device node.
    """
    resolved = os.path.realpath(path)
    try:
        if not os.path.isdir(resolved):
            dev = _device(resolved)
            if dev is None:
                raise InvalidArgument(f'get device path: "{path}": not a device node')
            return [dev]
        return _walk(resolved, "", _running_in_user_namespace())
    except FileNotFoundError:
        raise NotFound(f"error stating device path {path!r}: no such file or directory") from None
    except PermissionError as exc:
        raise FailedPrecondition(f"device path {path!r}: {exc.strerror}") from None


def ensure_host_path(path: str) -> str:
    """A bind mount's source as containerd uses it: created as a directory if missing, symlinks resolved."""
    try:
        os.stat(path)
    except FileNotFoundError:
        os.makedirs(path, 0o755, exist_ok=True)
    return os.path.realpath(path)


def _mountinfo() -> list[tuple[str, list[str], str, list[str]]]:
    """``(mount point, optional fields, fs type, super options)`` of each mount of this process."""
    rows = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if "-" not in fields[6:]:
                continue
            sep = fields.index("-", 6)
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            supers = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
            rows.append((point, fields[6:sep], fields[sep + 1], supers))
    return rows


def lookup_mount(path: str) -> tuple[str, str]:
    """``(mount point, optional fields)`` of the mount holding ``path`` (the last one mounted wins)."""
    target = os.path.realpath(path)
    best: tuple[str, str] = ("/", "")
    for point, optional, _, _ in _mountinfo():
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, " ".join(optional))
    return best


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _status_field(name: str) -> str | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _running_in_user_namespace() -> bool:
    uid_map = (_read("/proc/self/uid_map") or "").split()
    return uid_map not in ([], ["0", "0", "4294967295"])


def _swap_controller(cgroup_v2: bool) -> bool:
    if not cgroup_v2:
        return os.path.exists(f"{CGROUP_ROOT}/memory/memory.memsw.limit_in_bytes")
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            return os.path.exists(os.path.join(CGROUP_ROOT, line[3:].lstrip("/"), "memory.swap.max"))
    return False


def _kernel_version() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _apparmor_supported() -> bool:
    enabled = (_read("/sys/module/apparmor/parameters/enabled") or "").startswith("Y")
    parser = shutil.which("apparmor_parser") or os.path.exists("/sbin/apparmor_parser")
    return enabled and bool(parser) and os.path.isdir("/sys/kernel/security/apparmor")


def host_options(**overrides: Any) -> SpecOptions:
    """:class:`SpecOptions` with this host's facts; ``overrides`` set the config knobs (and may replace facts).

    ``disable_apparmor`` is forced on when the host cannot enforce AppArmor.
    """
    cgroup_v2 = os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers")
    controllers = (_read(f"{CGROUP_ROOT}/cgroup.controllers") or "").split()
    cap_eff = _status_field("CapEff")
    cgroup2_options: tuple[str, ...] = ()
    for point, _, fstype, supers in _mountinfo():
        if point == CGROUP_ROOT and fstype == "cgroup2":
            cgroup2_options = tuple(supers)
    facts: dict[str, Any] = {
        "current_oom_score_adj": int((_read("/proc/self/oom_score_adj") or "0").strip() or 0),
        "seccomp_enabled": _status_field("Seccomp") is not None,
        "cgroup_v2": cgroup_v2,
        "cgroup2_vfs_options": cgroup2_options,
        "swap_controller": _swap_controller(cgroup_v2),
        "hugetlb_controller": "hugetlb" in controllers if cgroup_v2 else os.path.isdir(f"{CGROUP_ROOT}/hugetlb"),
        "running_in_user_namespace": _running_in_user_namespace(),
        "all_capabilities": capabilities_from_mask(int(cap_eff, 16)) if cap_eff else KNOWN_CAPABILITIES,
        "node_hostname": socket.gethostname(),
        "kernel_version": _kernel_version(),
        "arch": os.uname().machine,
        "host_devices": device_nodes,
        "prepare_host_path": ensure_host_path,
        "lookup_mount": lookup_mount,
    }
    facts.update(overrides)
    facts["disable_apparmor"] = bool(overrides.get("disable_apparmor", True)) or not _apparmor_supported()
    return SpecOptions(**facts)
