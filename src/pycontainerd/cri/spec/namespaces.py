"""Linux namespaces of pods and containers, user namespace mappings, and which sysctls a pod may set.

The pause process owns the pod's namespaces: a container joins its network, IPC and UTS
namespaces through ``/proc/<pause pid>/ns/*`` (with host networking those are the host's, since
the pause process has none of its own), and its PID namespace unless it asks for its own
(CONTAINER) or another container's (TARGET).
"""

from __future__ import annotations

from typing import Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.cri.spec.mounts import id_mappings
from pycontainerd.errdefs import InvalidArgument

# Sysctls that belong to a namespace, by the namespace (kubelet's table, plus kernel.domainname
# which runc accepts in a UTS namespace of the container's own).
_IPC_SYSCTL_PREFIXES = ("kernel.shm", "kernel.msg", "fs.mqueue.")
_IPC_SYSCTLS = ("kernel.sem",)
_NET_SYSCTL_PREFIX = "net."

UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"
PING_GROUP_RANGE = "net.ipv4.ping_group_range"


def set_namespace(spec: dict[str, Any], kind: str, path: str = "") -> None:
    """Use namespace ``kind``: a new one, or the one at ``path``; an existing entry is replaced in place."""
    entry = {"type": kind, "path": path} if path else {"type": kind}
    spaces: list[dict[str, str]] = spec["linux"].setdefault("namespaces", [])
    for i, ns in enumerate(spaces):
        if ns["type"] == kind:
            spaces[i] = entry
            return
    spaces.append(entry)


def ns_path(pid: int, kind: str) -> str:
    """The ``/proc`` path of process ``pid``'s namespace ``kind`` (``net``, ``ipc``, ``uts``, ``pid``, ``user``)."""
    return f"/proc/{pid}/ns/{kind}"


def _mapping(mappings: Any, what: str) -> list[dict[str, int]]:
    if len(mappings) > 1:
        # The snapshotter's remapping handles a single range only.
        raise InvalidArgument(f"{what} mapping: only one mapping line supported, got {len(mappings)} mapping lines")
    if mappings and mappings[0].length < 1:
        raise InvalidArgument(f"{what} mapping: invalid mapping length: {mappings[0].length}")
    return id_mappings(mappings)


def userns_mappings(namespace_options: Any) -> tuple[list[dict[str, int]], list[dict[str, int]]] | None:
    """The ``(uid mappings, gid mappings)`` of a pod user namespace; None when none is asked for.

    Raises:
        InvalidArgument: mappings with mode NODE, mode POD without both mappings, more than one
            range, an empty range, or another mode.
    """
    if not namespace_options.HasField("userns_options"):
        return None
    userns = namespace_options.userns_options
    uids, gids = _mapping(userns.uids, "UID"), _mapping(userns.gids, "GID")
    mode = int(userns.mode)
    if mode == api.NODE:
        if uids or gids:
            raise InvalidArgument(
                f'user namespace configuration: can\'t use user namespace mode "NODE" with mappings. '
                f"Got {len(uids)} UID mappings and {len(gids)} GID mappings"
            )
    elif mode == api.POD:
        if not uids or not gids:
            raise InvalidArgument(
                'user namespace configuration: can\'t use user namespace mode "POD" without UID and GID mappings'
            )
    else:
        name = api.NamespaceMode.Name(mode) if mode in api.NamespaceMode.values() else str(mode)
        raise InvalidArgument(f'user namespace configuration: unsupported user namespace mode: "{name}"')
    return uids, gids


def same_userns(a: Any, b: Any) -> bool:
    """Whether two ``NamespaceOption``s ask for the same user namespace (mode and mappings, in order)."""
    if a.HasField("userns_options") != b.HasField("userns_options"):
        return False
    if not a.HasField("userns_options"):
        return True
    if a.userns_options.mode != b.userns_options.mode:
        return False
    try:
        return userns_mappings(a) == userns_mappings(b)
    except InvalidArgument:
        return False


def join_pod_namespaces(
    spec: dict[str, Any],
    namespace_options: Any,
    *,
    sandbox_pid: int,
    target_pid: int,
    userns: tuple[list[dict[str, int]], list[dict[str, int]]] | None,
) -> None:
    """Put a container into its pod's namespaces (containerd's ``WithPodNamespaces``)."""
    set_namespace(spec, "network", ns_path(sandbox_pid, "net"))
    set_namespace(spec, "ipc", ns_path(sandbox_pid, "ipc"))
    set_namespace(spec, "uts", ns_path(sandbox_pid, "uts"))
    if namespace_options.pid != api.CONTAINER:
        set_namespace(spec, "pid", ns_path(target_pid, "pid"))
    if userns is not None and namespace_options.userns_options.mode == api.POD:
        set_namespace(spec, "user", ns_path(sandbox_pid, "user"))
        set_id_mappings(spec, *userns)


def set_id_mappings(spec: dict[str, Any], uids: list[dict[str, int]], gids: list[dict[str, int]]) -> None:
    """Add a user namespace's id mappings (and the namespace, if the spec has none)."""
    linux = spec["linux"]
    if not any(ns["type"] == "user" for ns in linux.get("namespaces", [])):
        linux.setdefault("namespaces", []).append({"type": "user"})
    linux.setdefault("uidMappings", []).extend(uids)
    linux.setdefault("gidMappings", []).extend(gids)


def bind_host_sys(spec: dict[str, Any]) -> None:
    """Bind the host's /sys read-only instead of mounting sysfs.

    A user namespace cannot mount sysfs for a network namespace it does not own, which is the
    case with host networking.
    """
    options = ["rbind", "rro", "nosuid", "nodev", "noexec"]
    bind = {"destination": "/sys", "type": "bind", "source": "/sys", "options": options}
    mounts = spec["mounts"]
    at = next((i for i, m in enumerate(mounts) if m["destination"] == "/sys"), len(mounts))
    # In the place of sysfs: mounts below /sys (the cgroup filesystem) must come after it.
    spec["mounts"] = [*mounts[:at], bind, *(m for m in mounts[at:] if m["destination"] != "/sys")]


def check_sysctls(sysctls: dict[str, str], *, host_network: bool, host_ipc: bool) -> None:
    """Refuse sysctls that would change the host rather than the pod.

    ``net.*`` needs the pod's own network namespace; ``kernel.shm*``, ``kernel.msg*``,
    ``kernel.sem`` and ``fs.mqueue.*`` its own IPC namespace; ``kernel.domainname`` its own UTS
    namespace (which goes with its own network). Everything else is not namespaced at all.

    Raises:
        InvalidArgument: naming the first refused sysctl.
    """
    for name in sorted(sysctls):
        if name.startswith(_IPC_SYSCTL_PREFIXES) or name in _IPC_SYSCTLS:
            if host_ipc:
                raise InvalidArgument(f'sysctl "{name}" is not allowed in the host\'s IPC namespace')
        elif name.startswith(_NET_SYSCTL_PREFIX) or name == "kernel.domainname":
            if host_network:
                raise InvalidArgument(f'sysctl "{name}" is not allowed in the host\'s network namespace')
        elif name == "kernel.hostname":
            raise InvalidArgument(f'sysctl "{name}" is not allowed: set the pod\'s hostname instead')
        else:
            raise InvalidArgument(f'sysctl "{name}" is not in a separate kernel namespace')
