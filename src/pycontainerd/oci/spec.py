"""The default OCI runtime spec for a Linux container, as containerd populates it.

:func:`default_spec` gives what ``oci.populateDefaultUnixSpec`` gives (default mounts,
capabilities, masked and read-only paths, a cgroup path ``/<namespace>/<id>``, new pid, ipc,
uts, mount and network namespaces); the helpers change it the way ``oci.With...`` options do.
"""

from __future__ import annotations

import json
from typing import Any

SPEC_VERSION = "1.1.0"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACE_TYPES = ("pid", "ipc", "uts", "mount", "network", "user", "cgroup")

DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def _mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def default_mounts() -> list[dict[str, Any]]:
    """containerd's default mounts."""
    return [
        _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        _mount(
            "/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        _mount("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    ]


def default_spec(namespace: str, container_id: str, args: list[str] | None = None) -> dict[str, Any]:
    """A fresh spec for ``container_id`` in ``namespace`` running ``args``."""
    return {
        "ociVersion": SPEC_VERSION,
        "root": {"path": "rootfs"},
        "process": {
            "cwd": "/",
            "args": list(args or []),
            "env": [f"PATH={DEFAULT_PATH}"],
            "noNewPrivileges": True,
            "user": {"uid": 0, "gid": 0},
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "permitted", "effective")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "mounts": default_mounts(),
        "linux": {
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "cgroupsPath": f"/{namespace}/{container_id}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        },
    }


def with_namespace(spec: dict[str, Any], kind: str, path: str = "") -> None:
    """Use namespace ``kind`` (``network``, ``ipc``...): a new one, or join the one at ``path``."""
    if kind not in NAMESPACE_TYPES:
        raise ValueError(f"unknown namespace type {kind!r}")
    spaces: list[dict[str, str]] = spec["linux"].setdefault("namespaces", [])
    spaces[:] = [n for n in spaces if n.get("type") != kind]
    spaces.append({"type": kind, "path": path} if path else {"type": kind})


def without_namespace(spec: dict[str, Any], kind: str) -> None:
    """Share the host's namespace ``kind``."""
    spaces: list[dict[str, str]] = spec["linux"].setdefault("namespaces", [])
    spaces[:] = [n for n in spaces if n.get("type") != kind]


def with_hostname(spec: dict[str, Any], hostname: str) -> None:
    """Set the hostname (needs a UTS namespace of its own)."""
    spec["hostname"] = hostname


def with_readonly_rootfs(spec: dict[str, Any]) -> None:
    """Mount the root filesystem read-only."""
    spec["root"]["readonly"] = True


def encode(spec: dict[str, Any]) -> bytes:
    """The spec as the JSON bytes a container record carries."""
    return json.dumps(spec, separators=(",", ":")).encode()
