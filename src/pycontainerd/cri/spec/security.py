"""AppArmor profiles, privileged mode, and the masked and read-only /proc and /sys paths."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pycontainerd.cri.spec.capabilities import set_capabilities
from pycontainerd.cri.spec.seccomp import LOCALHOST, LOCALHOST_PREFIX, RUNTIME_DEFAULT, UNCONFINED, profile_from_path
from pycontainerd.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

APPARMOR_DEFAULT_PROFILE = "cri-containerd.apparmor.d"
"""The name containerd loads its default AppArmor profile under."""


def apparmor_profile(security_context: Any, *, privileged: bool, disabled: bool) -> str:
    """The ``process.apparmorProfile`` for a container ("" = none).

    The profile comes from ``security_context.apparmor`` or the deprecated
    ``apparmor_profile`` string; with neither, RuntimeDefault applies, except for privileged
    containers. The caller must have loaded the default profile (``cri-containerd.apparmor.d``)
    into the kernel before a container uses it.

    When AppArmor is off (``disabled``), the profile is ignored: containerd refuses any profile
    but Unconfined then, but this host family runs without AppArmor and kubelet may still ask.

    Raises:
        InvalidArgument: a localhost ref on a non-Localhost profile, an empty Localhost ref,
            an unknown profile type or a malformed profile string.
    """
    if security_context.HasField("apparmor"):
        kind, ref = int(security_context.apparmor.profile_type), str(security_context.apparmor.localhost_ref)
    elif security_context.apparmor_profile:
        kind, ref = profile_from_path(str(security_context.apparmor_profile))
    else:
        kind, ref = RUNTIME_DEFAULT, ""
    if disabled:
        if kind != UNCONFINED and (security_context.HasField("apparmor") or security_context.apparmor_profile):
            log.debug("AppArmor is disabled: ignoring the requested profile (type %d %r)", kind, ref)
        return ""
    if kind != LOCALHOST and ref:
        raise InvalidArgument("apparmor config invalid LocalhostRef must only be set if ProfileType is Localhost")
    if kind == UNCONFINED:
        return ""
    if kind == RUNTIME_DEFAULT:
        return "" if privileged else APPARMOR_DEFAULT_PROFILE
    if kind == LOCALHOST:
        name = ref.removeprefix(LOCALHOST_PREFIX)
        if not name:
            raise InvalidArgument("nil apparmor profile is not supported")
        return name
    raise InvalidArgument(f"apparmor unknown ProfileType {kind}")


def _writable(spec: dict[str, Any], mount_type: str) -> None:
    for mount in spec.get("mounts", []):
        if mount.get("type") == mount_type:
            mount["options"] = ["rw" if o == "ro" else o for o in mount.get("options", [])]


def make_privileged(spec: dict[str, Any], all_caps: Sequence[str]) -> None:
    """Lift the confinement of a privileged container (containerd's ``WithPrivileged``).

    Every capability in ``all_caps``, no masked or read-only paths, writable sysfs and cgroupfs,
    no AppArmor and no seccomp. Host devices are a separate step.
    """
    set_capabilities(spec, all_caps)
    spec["linux"].pop("maskedPaths", None)
    spec["linux"].pop("readonlyPaths", None)
    _writable(spec, "sysfs")
    _writable(spec, "cgroup")
    spec["process"].pop("apparmorProfile", None)
    spec["linux"].pop("seccomp", None)


def set_proc_paths(spec: dict[str, Any], security_context: Any, *, disable_proc_mount: bool) -> None:
    """Masked and read-only paths: kubelet's list, or containerd's defaults with ``disable_proc_mount``.

    Kubelet always sends its default lists (or empty ones for an Unmasked procMount), so an
    empty list means none, as containerd takes it.
    """
    if disable_proc_mount:
        return
    linux = spec["linux"]
    for key, paths in (
        ("maskedPaths", security_context.masked_paths),
        ("readonlyPaths", security_context.readonly_paths),
    ):
        if paths:
            linux[key] = [str(p) for p in paths]
        else:
            linux.pop(key, None)
