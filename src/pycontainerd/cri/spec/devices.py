"""Device nodes: CRI ``devices``, the host's /dev for privileged containers, and device cgroup rules.

A device lands twice in a spec: in ``linux.devices`` (runc creates the node in the container)
and as an allow rule in ``linux.resources.devices`` (the device cgroup lets the container open
it). containerd's default spec starts the rules with "deny everything".
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.cri.spec.options import DeviceLookup, HostDevice

ALLOW_ALL = {"allow": True, "access": "rwm"}


def _device_entry(dev: HostDevice, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "type": dev.type,
        "major": dev.major,
        "minor": dev.minor,
        "fileMode": dev.file_mode,
        "uid": dev.uid,
        "gid": dev.gid,
    }


def _container_path(dev: HostDevice, container_path: str) -> str:
    if not container_path:
        return dev.path
    return posixpath.join(container_path, dev.subpath) if dev.subpath else container_path


def add_cri_devices(spec: dict[str, Any], devices: Any, lookup: DeviceLookup, *, owner: tuple[int, int]) -> None:
    """Add the container's CRI ``Device`` list, each node (or each node below a directory) allowed.

    Args:
        spec: the spec to change.
        devices: the ``ContainerConfig.devices``.
        lookup: resolves a host path to its device nodes.
        owner: ``(uid, gid)`` to give the nodes instead of the host's; 0 keeps the host's
            (``device_ownership_from_security_context``).
    """
    linux = spec["linux"]
    rules = linux.setdefault("resources", {}).setdefault("devices", [])
    for device in devices:
        for dev in lookup(str(device.host_path)):
            entry = _device_entry(dev, _container_path(dev, str(device.container_path)))
            if owner[0]:
                entry["uid"] = owner[0]
            if owner[1]:
                entry["gid"] = owner[1]
            linux.setdefault("devices", []).append(entry)
            rule: dict[str, Any] = {"allow": True, "type": dev.type, "major": dev.major, "minor": dev.minor}
            if device.permissions:
                rule["access"] = str(device.permissions)
            rules.append(rule)


def add_host_devices(spec: dict[str, Any], lookup: DeviceLookup) -> None:
    """Give a privileged container every device node of the host's /dev (at the same paths)."""
    spec["linux"].setdefault("devices", []).extend(_device_entry(dev, dev.path) for dev in lookup("/dev"))


def allow_all_devices(spec: dict[str, Any]) -> None:
    """Replace the device cgroup rules with "read, write and mknod on every device"."""
    spec["linux"].setdefault("resources", {})["devices"] = [dict(ALLOW_ALL)]
