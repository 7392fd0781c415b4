"""Container mounts: kubelet's bind mounts, the pod's files, image volumes, and the default mounts they replace.

Every mount kubelet asks for becomes an ``rbind`` mount. Mounts are ordered by depth (number
of path elements) so a parent never hides a child; a mount replaces the default mount at the
same destination, and a mount of ``/dev`` replaces every default mount below it.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import TYPE_CHECKING, Any

from pycontainerd.api.k8s.cri.runtime.v1 import api_pb2 as api
from pycontainerd.errdefs import FailedPrecondition, InvalidArgument, Unimplemented

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pycontainerd.cri.spec.options import SandboxFiles, SpecOptions

ETC_HOSTNAME = "/etc/hostname"
ETC_HOSTS = "/etc/hosts"
RESOLV_CONF = "/etc/resolv.conf"
DEV_SHM = "/dev/shm"


def id_mappings(mappings: Iterable[Any]) -> list[dict[str, int]]:
    """CRI ``IDMapping`` messages as OCI ``LinuxIDMapping`` objects."""
    return [{"containerID": int(m.container_id), "hostID": int(m.host_id), "size": int(m.length)} for m in mappings]


def in_cri_mounts(destination: str, mounts: Iterable[Any]) -> bool:
    """Whether kubelet mounts something at ``destination`` itself."""
    clean = posixpath.normpath(destination)
    return any(posixpath.normpath(str(m.container_path)) == clean for m in mounts)


def pod_file_mounts(config: Any, files: SandboxFiles) -> list[Any]:
    """The pod's /etc/hostname, /etc/hosts, /etc/resolv.conf and /dev/shm, as CRI mounts.

    Files the service did not prepare, and destinations kubelet mounts itself, are left out.
    The /etc files follow the container's ``readonly_rootfs``; with the host IPC namespace the
    host's /dev/shm is shared instead of the pod's.
    """
    sc = config.linux.security_context
    userns = sc.namespace_options.userns_options
    own = config.mounts
    mounts = []
    for destination, source in (
        (ETC_HOSTNAME, files.hostname),
        (ETC_HOSTS, files.hosts),
        (RESOLV_CONF, files.resolv_conf),
    ):
        if source and not in_cri_mounts(destination, own):
            mount = api.Mount(container_path=destination, host_path=source, readonly=sc.readonly_rootfs)
            mount.uidMappings.extend(userns.uids)
            mount.gidMappings.extend(userns.gids)
            mounts.append(mount)
    shm = DEV_SHM if sc.namespace_options.ipc == api.NODE else files.shm
    if shm and not in_cri_mounts(DEV_SHM, own):
        # No id mappings: tmpfs supports idmapped mounts only from Linux 6.3, and the pod's shm is
        # empty at start anyway.
        mounts.append(api.Mount(container_path=DEV_SHM, host_path=shm))
    return mounts


def image_volume_mounts(config: Any, volumes: Sequence[str], container_root_dir: str) -> list[Any]:
    """A fresh directory under ``<container_root_dir>/volumes`` for each image ``VOLUME`` kubelet does not mount.

    containerd names the directories with random ids; here the name is a digest of the
    destination, so the same spec comes out of the same request.
    """
    userns = config.linux.security_context.namespace_options.userns_options
    mounts = []
    for volume in volumes:
        if in_cri_mounts(volume, config.mounts):
            continue
        destination = volume if volume.startswith("/") else posixpath.join("/", volume)
        name = hashlib.sha256(posixpath.normpath(destination).encode()).hexdigest()
        mount = api.Mount(container_path=destination, host_path=posixpath.join(container_root_dir, "volumes", name))
        mount.uidMappings.extend(userns.uids)
        mount.gidMappings.extend(userns.gids)
        mounts.append(mount)
    return mounts


def _check_propagation(source: str, mode: int, options: SpecOptions) -> None:
    if options.lookup_mount is None:
        return
    mount_point, optional = options.lookup_mount(source)
    tags = optional.split()
    if any(t.startswith("shared:") for t in tags):
        return
    if mode == api.PROPAGATION_HOST_TO_CONTAINER:
        if any(t.startswith("master:") for t in tags):
            return
        raise FailedPrecondition(f'path "{source}" is mounted on "{mount_point}" but it is not a shared or slave mount')
    raise FailedPrecondition(f'path "{source}" is mounted on "{mount_point}" but it is not a shared mount')


def bind_mount(spec: dict[str, Any], mount: Any, options: SpecOptions) -> dict[str, Any]:
    """The OCI mount for one CRI mount; propagation may also set ``linux.rootfsPropagation``.

    Raises:
        InvalidArgument: a relative container path, or a recursive read-only mount that is
            writable or not private.
        FailedPrecondition: ``rro`` unsupported by the runtime, or a propagated mount whose
            source is not shared (slave) on the host.
        Unimplemented: an image volume the service has not mounted (no host path).
    """
    destination = str(mount.container_path)
    if not destination.startswith("/"):
        raise InvalidArgument(f"mount destination {destination!r} must be an absolute path")
    source = str(mount.host_path)
    if not source:
        if mount.HasField("image") and mount.image.image:
            raise Unimplemented(f"image volume {mount.image.image!r} at {destination}: mount it before the spec")
        raise InvalidArgument(f"mount at {destination} has no host path")
    if options.prepare_host_path is not None:
        source = options.prepare_host_path(source)
    flags = ["rbind"]
    linux = spec["linux"]
    propagation = int(mount.propagation)
    if propagation == api.PROPAGATION_BIDIRECTIONAL:
        _check_propagation(source, propagation, options)
        flags.append("rshared")
        linux["rootfsPropagation"] = "rshared"
    elif propagation == api.PROPAGATION_HOST_TO_CONTAINER:
        _check_propagation(source, propagation, options)
        flags.append("rslave")
        if linux.get("rootfsPropagation") not in ("rshared", "rslave"):
            linux["rootfsPropagation"] = "rslave"
    else:  # PRIVATE, and containerd's fallback for values it does not know
        flags.append("rprivate")
    if mount.readonly and mount.recursive_read_only:
        if not options.recursive_read_only_mounts:
            raise FailedPrecondition(
                f'runtime handler does not support recursive read-only mounts (hostPath="{source}")'
            )
        if propagation != api.PROPAGATION_PRIVATE:
            name = api.MountPropagation.Name(propagation)
            raise InvalidArgument(
                f'recursive read-only mount needs private propagation, got "{name}" (hostPath="{source}")'
            )
        flags.append("rro")
    elif mount.recursive_read_only:
        raise InvalidArgument(f'recursive read-only mount conflicts with RW mount (hostPath="{source}")')
    else:
        flags.append("ro" if mount.readonly else "rw")
    entry: dict[str, Any] = {"destination": destination, "type": "bind", "source": source, "options": flags}
    if mount.uidMappings:
        entry["uidMappings"] = id_mappings(mount.uidMappings)
    if mount.gidMappings:
        entry["gidMappings"] = id_mappings(mount.gidMappings)
    return entry


def cgroup_mount(*, has_cgroup_ns: bool, options: SpecOptions) -> dict[str, Any]:
    """The ``/sys/fs/cgroup`` mount: read-only unless the handler makes it writable (or privileged mode does)."""
    flags = ["nosuid", "noexec", "nodev", "relatime", "rw" if options.cgroup_writable else "ro"]
    if not has_cgroup_ns:
        # Sharing the host's cgroup namespace means sharing its cgroup2 superblock: keep the
        # host's delegation options or the remount would strip them.
        flags += [o for o in options.cgroup2_vfs_options if o in ("nsdelegate", "memory_recursiveprot")]
    return {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": flags}


def _depth(mount: Any) -> int:
    return posixpath.normpath(str(mount.container_path)).count("/")


def apply_mounts(spec: dict[str, Any], config: Any, extra: Sequence[Any], options: SpecOptions) -> None:
    """Add kubelet's mounts and ``extra`` (pod files, image volumes) to ``spec["mounts"]``.

    Kubelet's mount wins over an extra one at the same destination; both replace default mounts.
    The cgroup mount must already be among the defaults.
    """
    own = list(config.mounts)
    mounts = own + [e for e in extra if not in_cri_mounts(str(e.container_path), own)]
    mounts.sort(key=_depth)  # stable: equal depths keep kubelet's order
    taken = {posixpath.normpath(str(m.container_path)) for m in mounts}
    spec["mounts"] = [
        m
        for m in spec.get("mounts", [])
        if posixpath.normpath(m["destination"]) not in taken
        and not ("/dev" in taken and posixpath.normpath(m["destination"]).startswith("/dev/"))
    ]
    spec["mounts"] += [bind_mount(spec, m, options) for m in mounts]
