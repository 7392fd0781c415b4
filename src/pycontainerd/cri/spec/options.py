"""The inputs besides the CRI messages: plugin and handler knobs, host facts, and the pod's files.

:class:`SpecOptions` gathers what containerd reads from its CRI config, from the runtime handler
and from the host (``/proc/self/...``, the cgroup mode, the device nodes). The builders never
probe the host themselves: every fact arrives here, so a test states the host it pretends to run on.
:func:`pycontainerd.cri.spec.host.host_options` fills the facts in from the real host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycontainerd.cri.spec.capabilities import KNOWN_CAPABILITIES

Spec = dict[str, Any]
"""An OCI runtime spec as a JSON-ready dict (``pycontainerd.oci.spec.encode`` turns it into bytes)."""


@dataclass(frozen=True, slots=True)
class HostDevice:
    """A device node on the host, as a stat of it tells.

    Attributes:
        path: the node's path on the host (symlinks resolved).
        subpath: where the node sits below the directory that was looked up ("" when the lookup
            named the node itself); a CRI device ``/dev/snd`` → ``/dev/audio`` maps
            ``/dev/snd/pcm0`` to ``/dev/audio/pcm0``.
        type: ``c`` (character), ``b`` (block) or ``p`` (FIFO).
        major: the device's major number.
        minor: the device's minor number.
        file_mode: the permission bits (no file type bits).
        uid: the node's owner.
        gid: the node's group.
    """

    path: str
    type: str
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0
    subpath: str = ""


DeviceLookup = Callable[[str], list[HostDevice]]
"""Host path → the device nodes it names (one, or every node below a directory, as containerd walks it).

Raises :class:`~pycontainerd.errdefs.NotFound` for a missing path and
:class:`~pycontainerd.errdefs.InvalidArgument` for a path that is no device.
"""

MountLookup = Callable[[str], tuple[str, str]]
"""Host path → ``(mount point, optional fields)`` of the mount holding it, from ``/proc/self/mountinfo``.

The optional fields are the space-separated ``shared:N`` / ``master:N`` tags.
"""


@dataclass(frozen=True, slots=True)
class SpecOptions:
    """Everything beyond the CRI request that decides a spec.

    Attributes:
        restrict_oom_score_adj: never give a container a lower OOM score adj than the daemon's own.
        current_oom_score_adj: the daemon's ``/proc/self/oom_score_adj``.
        disable_proc_mount: keep containerd's default masked and read-only paths instead of the
            ones kubelet sends (``disable_proc_mount`` in the CRI config).
        disable_cgroup: put nothing about cgroups in specs (containerd 1.x ``disable_cgroup``;
            containerd 2.0 removed the key).
        disable_apparmor: AppArmor is off (by config or because the host lacks it); profiles
            kubelet asks for are then ignored.
        enable_selinux: accepted for the config's sake; SELinux labels are never set.
        seccomp_enabled: the host kernel has seccomp.
        privileged_without_host_devices: privileged containers do not get the host's /dev nodes
            (handler option).
        privileged_without_host_devices_all_devices_allowed: ... yet may still use all devices
            through the device cgroup (handler option).
        device_ownership_from_security_context: CRI devices are owned by the container's
            run_as_user / run_as_group instead of the host node's owner.
        systemd_cgroup: runc manages cgroups through systemd (handler option ``SystemdCgroup``).
            containerd picks the systemd path form from a ``.slice`` parent alone; this flag only
            decides the path of a pod without a cgroup parent.
        cgroup_writable: mount ``/sys/fs/cgroup`` read-write (handler option).
        cgroup_v2: the host runs the unified cgroup hierarchy (a container then gets a cgroup
            namespace unless privileged).
        cgroup2_vfs_options: the VFS options of the host's ``/sys/fs/cgroup`` mount; ``nsdelegate``
            and ``memory_recursiveprot`` are copied to containers sharing the host cgroup namespace.
        swap_controller: the memory cgroup can limit swap.
        hugetlb_controller: the hugetlb cgroup controller exists.
        tolerate_missing_hugetlb_controller: skip hugepage limits instead of failing when the
            controller is missing.
        disable_hugetlb_controller: never set hugepage limits.
        enable_unprivileged_ports: a pod with its own netns may bind ports below 1024 unprivileged.
        enable_unprivileged_icmp: ... and open ICMP echo sockets unprivileged.
        running_in_user_namespace: the daemon itself runs inside a user namespace.
        unset_seccomp_profile: the seccomp profile when kubelet sends none (``runtime/default``,
            ``unconfined``, ``localhost/<path>``; empty = none).
        ignore_image_defined_volumes: do not give image ``VOLUME``s a directory of their own.
        recursive_read_only_mounts: the runtime handler supports ``rro`` mounts.
        pod_annotations: patterns (``path.Match`` style) of pod annotations passed into specs.
        container_annotations: patterns of container annotations passed into container specs.
        all_capabilities: what "ALL" and privileged grant (containerd: the daemon's effective set).
        node_hostname: the node's name, the HOSTNAME of containers in a pod without a hostname.
        kernel_version: ``(major, minor)`` of the host kernel (the default seccomp profile
            allows ptrace from 4.8 on).
        arch: the host's machine name (``os.uname().machine``), for the seccomp architectures.
        host_devices: resolves device paths; None = stat the real nodes
            (:func:`pycontainerd.cri.spec.host.device_nodes`).
        prepare_host_path: called with each bind mount's host path before it goes into the
            spec; returns the path to use. containerd creates missing paths as directories and
            resolves symlinks (:func:`pycontainerd.cri.spec.host.ensure_host_path`); None = use
            the path as given.
        lookup_mount: finds the mount holding a host path, to check that a propagated bind
            mount's source is shared (or slave); None = no check.
    """

    restrict_oom_score_adj: bool = False
    current_oom_score_adj: int = 0
    disable_proc_mount: bool = False
    disable_cgroup: bool = False
    disable_apparmor: bool = True
    enable_selinux: bool = False
    seccomp_enabled: bool = True
    privileged_without_host_devices: bool = False
    privileged_without_host_devices_all_devices_allowed: bool = False
    device_ownership_from_security_context: bool = False
    systemd_cgroup: bool = False
    cgroup_writable: bool = False
    cgroup_v2: bool = False
    cgroup2_vfs_options: tuple[str, ...] = ()
    swap_controller: bool = False
    hugetlb_controller: bool = False
    tolerate_missing_hugetlb_controller: bool = True
    disable_hugetlb_controller: bool = True
    enable_unprivileged_ports: bool = True
    enable_unprivileged_icmp: bool = True
    running_in_user_namespace: bool = False
    unset_seccomp_profile: str = ""
    ignore_image_defined_volumes: bool = False
    recursive_read_only_mounts: bool = False
    pod_annotations: tuple[str, ...] = ()
    container_annotations: tuple[str, ...] = ()
    all_capabilities: tuple[str, ...] = KNOWN_CAPABILITIES
    node_hostname: str = "localhost"
    kernel_version: tuple[int, int] = (6, 1)
    arch: str = "x86_64"
    host_devices: DeviceLookup | None = field(default=None, compare=False)
    prepare_host_path: Callable[[str], str] | None = field(default=None, compare=False)
    lookup_mount: MountLookup | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SandboxFiles:
    """Host paths of the files the CRI service prepared for a pod; "" = not prepared.

    Attributes:
        hostname: mounted at ``/etc/hostname`` in containers.
        hosts: mounted at ``/etc/hosts``.
        resolv_conf: mounted at ``/etc/resolv.conf`` (in the pause container too).
        shm: the pod's ``/dev/shm`` (a tmpfs the service mounted), shared by its containers.
    """

    hostname: str = ""
    hosts: str = ""
    resolv_conf: str = ""
    shm: str = ""
